"""The toolkit's training step against a bare ``Trainer`` loop: samples per second on the same model and batches.

The toolkit (``train_audio_lm``) decodes each clip in the DataLoader, renders every row through the family's
chat template twice (the conversation, and the prompt alone for the label mask) and checks each clip before
training; the bare loop trains the same LoRA model on clips decoded beforehand, with labels that mask
nothing. Both run the same number of steps of the same batch size; the ratio is the toolkit's overhead,
measured in this run. Prints samples/s of each (``Trainer``'s own figure) and their ratio.

    python benchmarks/train_audio_lm.py --model granite-speech --clips 32 --steps 40
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fusion_datasets.testing import media
from fusion_datasets.testing.zoo import build_tiny_model
from fusion_datasets.train.audio_lm import load_config, train_audio_lm
from fusion_datasets.train.audio_lm.model import load_base, with_adapter

ANSWERS = ("a tone", "a hiss")


def _toy_data(folder: Path, count: int, seconds: float) -> tuple[Path, list[np.ndarray]]:
    """``count`` clips of two kinds and their FusionAudio JSON; also the clips' samples."""
    (folder / "clips").mkdir(parents=True)
    rows, clips = [], []
    for index in range(count):
        samples = (media.music if index % 2 == 0 else media.noise)(seconds, 16000, seed=index)
        media.write_audio(folder / "clips" / f"{index}.wav", samples, 16000)
        clips.append(samples[0])
        rows.append({"audio_id": f"clips/{index}.wav", "instruction": "What do you hear?", "input": "",
                     "output": ANSWERS[index % 2]})
    (folder / "toy.json").write_text(json.dumps(rows))
    return folder / "toy.json", clips


def _bare(config, clips: list[np.ndarray]) -> float:
    """Samples/s of a plain ``Trainer`` on the same LoRA model, clips decoded beforehand, no label masking."""
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    base = load_base(config, torch.float32)
    set_seed(config.seed)
    model = with_adapter(base, config)
    rows = [{"audio": clip, "answer": ANSWERS[index % 2]} for index, clip in enumerate(clips)]

    def collate(batch):
        conversations = [[{"role": "user", "content": [{"type": "audio", "audio": row["audio"]},
                                                       {"type": "text", "text": "What do you hear?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]}]
                         for row in batch]
        inputs = base.processor.apply_chat_template(
            conversations, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"text_kwargs": {"padding": True}, "sampling_rate": 16000})
        return {**inputs, "labels": inputs["input_ids"]}

    arguments = TrainingArguments(
        output_dir=tempfile.mkdtemp(), max_steps=config.max_steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_batch_size, dataloader_num_workers=config.num_workers,
        use_cpu=True, save_strategy="no", report_to="none", remove_unused_columns=False, disable_tqdm=True)
    trained = Trainer(model=model, args=arguments, train_dataset=rows, data_collator=collate).train()
    return trained.metrics["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="granite-speech", help="a tiny zoo model")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-workers", type=int, default=0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(options.model, Path(folder) / "zoo")
        data, clips = _toy_data(Path(folder) / "data", options.clips, options.seconds)
        settings = [f"max_steps={options.steps}", f"per_device_batch_size={options.batch_size}",
                    "gradient_accumulation_steps=1", f"num_workers={options.num_workers}", "eval_fraction=0",
                    "save_steps=100000", "lora_dropout=0"]
        config = load_config(str(model), settings, data=[str(data)], output=str(Path(folder) / "out"))
        started = time.perf_counter()
        toolkit = train_audio_lm(config)["samples_per_second"]
        whole = time.perf_counter() - started
        bare = _bare(config, clips)
    print(f"{options.model}, {options.clips} clips of {options.seconds:g} s, {options.steps} steps of "
          f"{options.batch_size}: toolkit {toolkit:.1f} samples/s (whole command {whole:.1f} s, loading and the "
          f"clip check included), bare Trainer {bare:.1f} samples/s, ratio {toolkit / bare:.2f}")


if __name__ == "__main__":
    main()
