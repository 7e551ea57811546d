"""Text-audio retrieval metrics as WavCaps and LAION-CLAP compute them, as an ``evaluate`` module.

A thin wrapper over :func:`fusion_datasets.eval.retrieval_metrics`, which defines the protocol.
One import per line: evaluate's import scanner misreads ``import a, b``.
"""

import datasets
import evaluate
import numpy

from fusion_datasets.eval import retrieval_metrics

_DESCRIPTION = """
Text-to-audio (T2A) and audio-to-text (A2T) retrieval as WavCaps and LAION-CLAP evaluate it: several
captions per audio; T2A ranks each caption's audio among all audios; A2T takes the best rank among an
audio's captions. Returns R@1, R@5, R@10 and mAP@10 as percentages, and the mean and median rank, for each
direction. The A2T mAP@10 sorts an audio's caption ranks (WavCaps, Mei et al.) unless
map_protocol="unsorted" (LAION-CLAP's code, caption order). Ties count against the model and identical
embeddings tie exactly. Embeddings are L2-normalised before the cosine similarity.
"""

_KWARGS_DESCRIPTION = """
Args:
    text_embeds: one embedding per caption, shape (captions, d).
    text_to_audio: for each caption, the index of the audio it describes.
    audio_embeds: one embedding per audio, shape (audios, d) (a keyword argument, not a feature: there
        are fewer audios than captions).
    map_protocol: the A2T mAP@10's, "sorted" (the default) or "unsorted".
Returns:
    a dict with t2a_R@1, t2a_R@5, t2a_R@10, t2a_mAP@10, a2t_R@1, a2t_R@5, a2t_R@10, a2t_mAP@10,
    t2a_mean_rank, t2a_median_rank, a2t_mean_rank, a2t_median_rank.
Example:
    >>> metric = evaluate.load(module_path("clap_retrieval"))  # fusion_datasets.evaluate_modules  # doctest: +SKIP
    >>> metric.compute(text_embeds=[[1.0, 0.0], [0.0, 1.0]], text_to_audio=[0, 1],
    ...                audio_embeds=[[1.0, 0.0], [0.0, 1.0]])["t2a_R@1"]  # doctest: +SKIP
    100.0
"""

_CITATION = """
@inproceedings{laionclap2023,
  title = {Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and Keyword-to-Caption Augmentation},
  author = {Wu, Yusong and Chen, Ke and Zhang, Tianyu and Hui, Yuchen and Berg-Kirkpatrick, Taylor and Dubnov, Shlomo},
  booktitle = {ICASSP},
  year = {2023}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClapRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "text_embeds": datasets.List(datasets.Value("float32")),
                    "text_to_audio": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, text_embeds, text_to_audio, audio_embeds, map_protocol="sorted"):
        return retrieval_metrics(
            numpy.asarray(text_embeds, dtype=numpy.float32),
            numpy.asarray(audio_embeds, dtype=numpy.float32),
            numpy.asarray(text_to_audio, dtype=numpy.int64),
            map_protocol,
        )
