"""The pipeline runner: clips to cues, captions and QA pairs, shard by shard, resumable."""
