"""Getting the media of AudioSet-style segment lists (AudioSet, AudioCaps, VGGSound) from YouTube.

:func:`fusion_datasets.fetch.fetcher.fetch` (``fusion-datasets fetch``) downloads with yt-dlp, cuts with
ffmpeg, and records what became of every segment in ``fetch_manifest.parquet``
(:mod:`fusion_datasets.fetch.manifest`), which ``build`` of the benchmarks reads to say which clips exist.
"""
