"""The pipeline runner: clips to cues, captions and QA pairs, part by part; reruns resume from the run state."""
