"""``task=retrieve``, ``task=caption``, ``task=pretrain`` and ``task=qa_open`` on a VALOR-layout benchmark
(``data.benchmark``): a tiny folder in the seed's layout (id lists, txt_mapper, ``videos/<id>.mp4``) written from a
few AVSynth clips is read through the benchmark's reader (the written captions / questions arrive as the items'
targets and references), trains one step and is evaluated; a benchmark of the wrong kind for the task is a one-line
error. A QA benchmark holds each video's frames and log-mels once, its questions indexing them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avlearn.cli.main import main
from avlearn.config import compose_run

TINY = ["method=baseline", "backbone=small_cnn", "data.frame_size=32", "data.n_mels=32", "data.workers=1",
        "train.batch_size=4", "train.steps=1", "train.val_every=-1", "train.select=last"]  # fmt: skip
DECODER = ["task.hidden_size=32", "task.intermediate_size=64", "task.layers=1", "task.beam_size=2",
           "task.max_length=5"]  # fmt: skip
TRAIN, TEST = 8, 4  # clips in the training list (one held out for validation) and in the test list


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _layout(synth: Path, folder: Path, lists: dict[str, str], mappers: dict[str, str], entry) -> dict[str, dict]:  # noqa: ANN001
    """AVSynth's first clips as ``folder/videos/<id>.mp4`` with each split's id list ``lists[split]`` and mapper
    ``mappers[split]`` (``entry(captions)``: what the mapper holds for a clip). Returns split -> id -> entry."""
    captions = json.loads((synth / "captions" / "txt_mapper.json").read_text())
    ids = sorted(captions)[: TRAIN + TEST]
    written = {
        "train": {v: entry(captions[v]) for v in ids[:TRAIN]},
        "test": {v: entry(captions[v]) for v in ids[TRAIN:]},
    }
    by_mapper: dict[str, dict] = {}
    for split, entries in written.items():
        _write(folder / lists[split], list(entries))
        by_mapper.setdefault(mappers[split], {}).update(entries)
        for vid in entries:
            (folder / "videos").mkdir(parents=True, exist_ok=True)
            shutil.copy(synth / "videos" / f"{vid}.mp4", folder / "videos" / f"{vid}.mp4")
    for name, entries in by_mapper.items():
        _write(folder / name, entries)
    return written


@pytest.fixture(scope="module")
def lsmdc(small_synth, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """LSMDC's layout (``lsmdc/{train,test}_id.json``, ``txt_mapper.json``) with AVSynth clips and captions."""
    root = tmp_path_factory.mktemp("valor_layout")
    lists = {s: f"{s}_id.json" for s in ("train", "test")}
    return root, _layout(small_synth, root / "lsmdc", lists, dict.fromkeys(lists, "txt_mapper.json"), list)


@pytest.fixture(scope="module")
def valor1m(small_synth, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """VALOR-1M's layout (``valor-1m/pretrain_ids.json``, ``pretrain_txt_mapper.json``): its one list, the training
    clips (the clips written as "test" are in the mapper, not the list)."""
    root = tmp_path_factory.mktemp("valor1m_layout")
    lists = {"train": "pretrain_ids.json", "test": "unlisted_ids.json"}
    return root, _layout(small_synth, root / "valor-1m", lists, dict.fromkeys(lists, "pretrain_txt_mapper.json"), list)


def _qa(captions: list[str]) -> list[dict[str, str]]:
    """Two question-answer pairs of a clip, answers from its first caption (mixed case: normalisation applies)."""
    words = captions[0].split()
    return [{"question": "what is the first word?", "answer": words[0].upper()},
            {"question": "what is the last word?", "answer": words[-1]}]  # fmt: skip


@pytest.fixture(scope="module")
def msrvtt_qa(small_synth, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """MSRVTT-QA's layout (``MSRVTT/standardsplit_{train,test}_id.json``, its two mappers) with AVSynth clips."""
    root = tmp_path_factory.mktemp("valor_qa_layout")
    lists = {s: f"standardsplit_{s}_id.json" for s in ("train", "test")}
    mappers = {"train": "txt_mapper_vqa_1500.json", "test": "txt_mapper_vqa.json"}
    return root, _layout(small_synth, root / "MSRVTT", lists, mappers, _qa)


def _cfg(task: str, root: Path, benchmark: str, *extra: str):  # noqa: ANN202
    return compose_run([f"task={task}", *TINY, f"data.name={benchmark}", f"data.root={root}",
                        f"data.benchmark={benchmark}", *extra])  # fmt: skip


def _audio_pre(cfg):  # noqa: ANN001, ANN202
    from avlearn.backbones.cnn import log_mel_input

    return log_mel_input(sample_rate=cfg.data.sample_rate, n_mels=cfg.data.n_mels, hop_ms=cfg.data.hop_ms)


def _pipeline(cfg):  # noqa: ANN001, ANN202
    from avlearn.registry import TASKS

    return TASKS.spec(cfg.task.name).pipeline(cfg, _audio_pre(cfg))


def test_retrieve_reads_the_benchmarks_clips_and_every_caption(lsmdc):
    import torch

    from avlearn.data.pipelines.captions import _embed_captions

    root, written = lsmdc
    cfg = _cfg("retrieve", root, "lsmdc")
    splits = _pipeline(cfg)
    captions = {**written["train"], **written["test"]}
    assert splits.test.clips.ids == list(written["test"]) and len(splits.train) + len(splits.val) == TRAIN
    assert splits.info.segments == 5 and splits.test[0]["frames"].shape[0] == 5  # LSMDC's 5 s clips
    for clips in (splits.train, splits.test):  # every caption embedded, by the task's text tower
        expected, counts = _embed_captions("minilm_l6", None, [captions[v] for v in clips.clips.ids])
        assert torch.equal(clips.counts, counts) and torch.allclose(clips.texts, expected, atol=1e-6)
    assert torch.equal(splits.test[1]["text"], splits.test.texts[1, 0])  # evaluation: the first caption


def test_caption_reads_every_caption_as_references(lsmdc):
    from avlearn.layers.text_decoder import tokenize

    root, written = lsmdc
    splits = _pipeline(_cfg("caption", root, "lsmdc"))
    assert splits.info.references == {**written["train"], **written["test"]}
    first = written["test"][splits.test.clips.ids[0]][0]
    assert splits.test[0]["caption_ids"].tolist() == tokenize([first], 32)["input_ids"][0].tolist()


def test_qa_open_reads_one_item_per_question(msrvtt_qa):
    from avlearn.data.pipelines.avqa import tokenize_questions

    root, written = msrvtt_qa
    splits = _pipeline(_cfg("qa_open", root, "msrvtt_qa"))
    pairs = [(f"{vid}#{n}", p) for vid, qa in written["test"].items() for n, p in enumerate(qa)]
    assert [splits.test[i]["id"] for i in range(len(splits.test))] == [qid for qid, _ in pairs]
    expected = tokenize_questions([p["question"] for _, p in pairs])["input_ids"]
    assert [splits.test[i]["input_ids"].tolist() for i in range(len(pairs))] == expected.tolist()
    names = splits.info.class_names
    assert [names[int(splits.test[i]["answer"])] for i in range(len(pairs))] == [p["answer"] for _, p in pairs]
    assert len(splits.train) + len(splits.val) == 2 * TRAIN and splits.test[0]["question_type"] == "msrvtt_qa"


def test_the_retrieval_figure_shows_the_query_captions(lsmdc, tmp_path, monkeypatch):
    """The report's figure labels each test query by its first caption (the benchmark's references), not its id."""
    import torch

    import avlearn.viz.retrieval as viz

    root, written = lsmdc
    splits = _pipeline(_cfg("caption", root, "lsmdc"))  # the same test clips as retrieve's, without the text tower
    shown = []
    monkeypatch.setattr(viz, "plot_ranking", lambda path, queries, ranked: shown.extend(queries) or path)  # no PNG
    n = len(splits.test)
    viz._retrieve_plot(splits, {"preds": {"text": torch.eye(n), "clip": torch.eye(n)}}, tmp_path / "r.png")
    assert shown == [written["test"][v][0] for v in splits.test.clips.ids[: viz.SHOWN]] and len(shown) == min(
        n, viz.SHOWN
    )


def test_qa_open_holds_each_video_once(msrvtt_qa):
    """The stored frames / log-mels are one row per video (two questions each), and every question's item holds
    its video's frames and log-mels as decoded from the video file."""
    import numpy as np
    import torch

    from avlearn.data.datasets.media import Decode
    from avlearn.data.pipelines import load_media
    from avlearn.data.segments import segment_log_mel
    from avlearn.registry import DATASETS

    root, written = msrvtt_qa
    cfg = _cfg("qa_open", root, "msrvtt_qa")
    splits = _pipeline(cfg)
    clips = splits.test.clips
    assert len(clips.frames) == len(clips.audio) == len(written["test"]) == len(splits.test) // 2
    reader = DATASETS.get("msrvtt_qa")(root, "test")
    pre = _audio_pre(cfg)
    decode = Decode(frames=10, seconds=10.0, size=32, sample_rate=pre.sample_rate)
    for i, out in enumerate(load_media(reader.media, reader.records, decode)):  # one decoding per question
        item = splits.test[i]
        wave = torch.zeros(10 * pre.sample_rate)
        part = torch.from_numpy(np.asarray(out["wave"], dtype=np.float32))[: len(wave)]
        wave[: len(part)] = part
        assert torch.equal(item["frames"], torch.from_numpy(np.array(out["frames"])))
        assert torch.allclose(item["audio"], segment_log_mel(wave[None], 10, pre)[0], atol=1e-5)


def test_pretrain_reads_the_benchmarks_captions(valor1m):
    """VALOR-1M's listed clips, their captions tokenised as written; it publishes no test list: the test split is
    the held-out validation; the kNN probe needs labels, which a caption benchmark has not (one-line error)."""
    from avlearn.errors import ConfigError
    from avlearn.layers.text_decoder import tokenize

    root, written = valor1m
    splits = _pipeline(_cfg("pretrain", root, "valor1m"))
    train, val = splits.train.clips.ids, splits.val.clips.ids
    assert sorted(train + val) == sorted(written["train"]) and splits.test.clips.ids == val
    assert splits.info.references == {v: written["train"][v] for v in train + val}
    for i, vid in enumerate(val):
        first = tokenize([written["train"][vid][0]], 32)
        assert splits.val[i]["caption_ids"].tolist() == first["input_ids"][0].tolist()
    with pytest.raises(ConfigError, match="task.knn_every=2: the probe needs labelled clips"):
        _pipeline(_cfg("pretrain", root, "valor1m", "task.knn_every=2"))


def test_valor_pretrains_one_step_on_valor1m(valor1m, tmp_path):
    """One VALOR pretraining step on the VALOR-1M layout, with VALOR-L's task prompts and the MLM branch on."""
    root, _ = valor1m
    args = ["task=pretrain", *TINY[2:], "method=valor_tiny", "backbone=valor_tiny", "method.task_prompt=true",
            "method.mlm_groups=[tv]", "data.name=valor1m", f"data.root={root}", "data.benchmark=valor1m",
            "task.max_words=16", f"out={tmp_path}", "name=run"]  # fmt: skip
    assert main(["train", *args]) == 0
    (run_dir,) = (tmp_path / "run").iterdir()
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert set(test) == {"loss", "loss_mga", "loss_mgc", "loss_mlm"}  # MGA is 0 on the one held-out clip
    assert test["loss_mgc"] > 0 and test["loss_mlm"] > 0


@pytest.mark.parametrize(("task", "metric", "benchmark", "extra"), [
    ("retrieve", "t2v_r1", "lsmdc", []),
    ("caption", "CIDEr", "lsmdc", ["task.meteor=false", *DECODER]),
    ("qa_open", "overall", "msrvtt_qa", DECODER),
])  # fmt: skip
def test_a_text_task_trains_and_evaluates_on_the_benchmark(task, metric, benchmark, extra, request, tmp_path):
    root, _ = request.getfixturevalue(benchmark)
    args = [f"task={task}", *TINY, *extra, f"data.name={benchmark}", f"data.root={root}",
            f"data.benchmark={benchmark}", f"out={tmp_path}", "name=run"]  # fmt: skip
    assert main(["train", *args]) == 0
    (run_dir,) = (tmp_path / "run").iterdir()
    assert metric in json.loads((run_dir / "metrics.json").read_text())["test"]


@pytest.mark.parametrize(("task", "benchmark"), [("retrieve", "esc50"), ("caption", "msrvtt_qa"), ("qa_open", "lsmdc")])
def test_a_benchmark_of_the_wrong_kind_is_a_one_line_error(task, benchmark, tmp_path, capsys):
    args = [f"task={task}", *TINY, f"data.name={benchmark}", f"data.root={tmp_path}", f"data.benchmark={benchmark}",
            f"out={tmp_path}"]  # fmt: skip
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"data.benchmark='{benchmark}'" in err and f"task={task}" in err


def test_retrieve_refuses_a_class_holdout_on_a_benchmark(lsmdc, tmp_path, capsys):
    root, _ = lsmdc
    args = ["task=retrieve", *TINY, "data.name=lsmdc", f"data.root={root}", "data.benchmark=lsmdc",
            "task.holdout=[horn]", f"out={tmp_path}"]  # fmt: skip
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.holdout=['horn']" in err


def test_the_text_benchmark_lists_are_the_captioned_and_qa_readers():
    """``CAPTION_BENCHMARKS`` / ``QA_BENCHMARKS`` against the readers' classes: a caption reader (``CaptionDataset``)
    with VALOR QA's records is a QA benchmark, the other caption readers caption benchmarks, the rest neither."""
    import avlearn
    from avlearn.data.datasets.valor32k import CaptionDataset, VALORQADataset
    from avlearn.data.pipelines.clips import BENCHMARKS, CAPTION_BENCHMARKS, QA_BENCHMARKS
    from avlearn.registry import DATASETS

    avlearn.register_all()
    for name, row in BENCHMARKS.items():
        reader = DATASETS.get(row.reader)
        captioned = issubclass(reader, CaptionDataset)
        qa = captioned and reader.read_records is VALORQADataset.read_records
        assert (name in QA_BENCHMARKS, name in CAPTION_BENCHMARKS) == (qa, captioned and not qa), name
