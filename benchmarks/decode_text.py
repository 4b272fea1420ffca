"""Text decoding benchmark: beam search with the key/value cache against without it (``avlearn.layers.text_decoder``).

A random-init decoder of the caption task's default size (BERT, width 256, 2 layers, 4 heads, the full 30522-token
WordPiece vocabulary unless ``--vocab``) attends to ``--memory`` tokens of ``--batch`` clips (10 segments of pooled
audio and visual features and 4x4 visual tokens: 180 tokens by default) and generates exactly ``--tokens`` tokens
with beam search (``--beam``; [SEP] is never chosen here, so every hypothesis runs to the end). Both ways run the
same search on the same model; the tokens must be equal (``same_tokens``). The median of ``--rounds`` interleaved
rounds is reported, as wall seconds and as seconds of this process's CPU time (the wall time drops when the machine
is shared).

Run: ``python benchmarks/decode_text.py [--tokens 30] [--beam 4] [--batch 8] [--memory 180] [--threads 1]``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from avlearn.layers.text_decoder import SEP, Decoding, TextDecoder


def _timed(fn) -> tuple[float, float, list]:  # noqa: ANN001
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--memory", type=int, default=180)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 1024,
              "vocab_size": args.vocab}  # fmt: skip
    decoder = TextDecoder(256, config).eval()
    with torch.no_grad():
        decoder.model.cls.predictions.bias[SEP] = -1e4  # every hypothesis runs to --tokens
    memory = torch.randn(args.batch, args.memory, 256)
    settings = Decoding(beam_size=args.beam, max_length=args.tokens)
    times: dict[str, list[tuple[float, float]]] = {"cache": [], "no_cache": []}
    outputs = {}
    for _ in range(args.rounds):
        for name in times:
            wall, cpu, outputs[name] = _timed(lambda n=name: decoder.generate(memory, settings, use_cache=n == "cache"))
            times[name].append((wall, cpu))
    median = {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()
    }
    print(json.dumps({
        "tokens": args.tokens, "beam": args.beam, "batch": args.batch, "memory_tokens": args.memory,
        "vocab": args.vocab, "threads": args.threads, "rounds": args.rounds,
        "generated_lengths": sorted({len(t) for t in outputs["cache"]}),
        "same_tokens": outputs["cache"] == outputs["no_cache"],
        "cache_wall_s": median["cache"][0], "no_cache_wall_s": median["no_cache"][0],
        "cache_cpu_s": median["cache"][1], "no_cache_cpu_s": median["no_cache"][1],
        "speedup_wall": median["no_cache"][0] / median["cache"][0],
        "speedup_cpu": median["no_cache"][1] / median["cache"][1],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
