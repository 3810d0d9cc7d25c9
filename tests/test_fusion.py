"""Multi-system fusion: joining recognisers' files by id, `correct-batch --join`, format parity, POST /v1/fuse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.batch.join import join
from cascade.fusion.fuse import fuse, fuse_many
from cascade.metrics import normalize
from cascade.config import FusionOptions
from cascade.types import FusionInput, InvalidInput, SystemText

SYSTEMS = ("deepspeech", "google", "azure", "watson")
runner = CliRunner()


@pytest.fixture(scope="module")
def frag(test_data: Path) -> Path:
    return test_data / "asr-outputs"


def _paths(frag: Path, names=SYSTEMS) -> list[Path]:  # noqa: ANN001
    return [frag / f"{n}.csv" for n in names]


def test_join_three_files_with_an_id_missing_in_one(frag: Path) -> None:
    joined = join(_paths(frag, ("deepspeech", "google", "watson")))
    assert joined.systems == ("deepspeech", "google", "watson")
    assert len(joined.inputs) == 7 and joined.missing == {"deepspeech": 0, "google": 0, "watson": 1}
    by_id = {i.id: i for i in joined.inputs}
    assert [o.system for o in by_id["1089-134686-0015"].outputs] == ["deepspeech", "google"]
    assert [o.system for o in by_id["1089-134686-0008"].outputs] == ["deepspeech", "google", "watson"]
    assert by_id["1089-134686-0008"].reference.startswith("THE CHAOS")
    # order given = order of the hypotheses; ids in first-seen order (watson's first, then the one it lacks)
    rev = join(_paths(frag, ("watson", "google", "deepspeech")))
    assert [o.system for o in rev.inputs[0].outputs] == ["watson", "google", "deepspeech"]
    assert rev.inputs[-1].id == "1089-134686-0015"


def test_join_files_sharing_no_id(frag: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("id,text\nutt-1,hello world\nutt-2,good morning\n")
    with pytest.raises(InvalidInput, match="shares no utterance id"):
        join([frag / "google.csv", other])
    result = runner.invoke(app, ["correct-batch", "--join", str(frag / "google.csv"), str(other),
                                 "--out", str(tmp_path / "fused.jsonl")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "shares no utterance id with the other files" in " ".join(result.output.split())
    assert not (tmp_path / "fused.jsonl").exists()
    one = runner.invoke(app, ["correct-batch", "--join", str(other), "--out", str(tmp_path / "f.jsonl")])
    assert one.exit_code == 1 and "at least two files" in one.output


def test_fuse_rover_votes_on_normalised_words() -> None:
    inp = FusionInput(id="u", outputs=(SystemText(system="a", text="Mr. Smith paid $20."),
                                       SystemText(system="b", text="mister smith paid twenty dollars"),
                                       SystemText(system="c", text="Mister Smith pays 20 dollars")))
    out = fuse(inp, "rover")
    assert out.method == "rover" and out.text == normalize("mister smith paid twenty dollars")
    with pytest.raises(InvalidInput, match="needs an LLM backend"):
        fuse(inp, "ger")


def _run_join(paths: list[Path], out: Path, *extra: str) -> list[dict]:
    result = runner.invoke(app, ["correct-batch", "--join", *map(str, paths), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_correct_batch_join_rover_records(frag: Path, tmp_path: Path) -> None:
    from cascade.batch.join import reliability

    recs = _run_join(_paths(frag), tmp_path / "fused.jsonl", "--mode", "rover")
    joined = join(_paths(frag))
    weighted = FusionOptions(weights=reliability(joined, FusionOptions()).weights)  # estimated from the whole input
    assert [r["id"] for r in recs] == [i.id for i in joined.inputs]
    for rec, inp in zip(recs, joined.inputs):
        assert rec["method"] == "rover" and rec["fallback_reason"] is None
        assert rec["systems"] == {o.system: o.text for o in inp.outputs}
        assert rec["corrected"] == fuse(inp, "rover", options=weighted).text
        assert rec["reference"] == inp.reference
    empty = next(r for r in recs if r["id"] == "8230-279154-0019")
    assert empty["systems"]["azure"] == "" and empty["corrected"]  # the empty system is outvoted, not an error


def _as_jsonl(src: Path, dst: Path) -> Path:
    from cascade.formats.tabular import read_table

    with dst.open("w") as fh:
        for row in read_table(src).rows():
            fh.write(json.dumps({"id": row.id, "text": row.text, "reference": row.reference}) + "\n")
    return dst


def _as_hyporadise(src: Path, dst: Path) -> Path:
    from cascade.formats.tabular import read_table

    dst.write_text(json.dumps([{"id": r.id, "input": [r.text], "output": r.reference} for r in read_table(src).rows()]))
    return dst


def _as_tsv(src: Path, dst: Path) -> Path:
    rows = list(csv.reader(src.open(encoding="utf-8")))
    with dst.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter="\t").writerows(rows)
    return dst


def test_csv_jsonl_hyporadise_give_identical_output(frag: Path, tmp_path: Path) -> None:
    outputs = {}
    for fmt, convert in (("csv", None), ("tsv", _as_tsv), ("jsonl", _as_jsonl), ("json", _as_hyporadise)):
        folder = tmp_path / fmt
        folder.mkdir()
        paths = [p if convert is None else convert(p, folder / f"{p.stem}.{fmt}") for p in _paths(frag)]
        _run_join(paths, folder / "fused.jsonl", "--mode", "rover")
        outputs[fmt] = (folder / "fused.jsonl").read_bytes()
    assert outputs["csv"] and len(set(outputs.values())) == 1
    # the single-file path too: one system's CSV vs JSONL vs HyPoradise through the batch engine
    singles = []
    for src in (frag / "google.csv", _as_jsonl(frag / "google.csv", tmp_path / "g.jsonl"),
                _as_hyporadise(frag / "google.csv", tmp_path / "g.json")):
        out = tmp_path / f"single-{src.suffix[1:]}.jsonl"
        result = runner.invoke(app, ["correct-batch", str(src), "--out", str(out), "--mode", "none"])
        assert result.exit_code == 0, result.output
        singles.append(out.read_bytes())
    assert len(set(singles)) == 1


def test_cli_join_mode_checked(frag: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["correct-batch", "--join", *map(str, _paths(frag)), "--out",
                                 str(tmp_path / "x.jsonl"), "--mode", "none"])
    assert result.exit_code == 1 and "--correct rover, rescore, rerank or ger" in result.output
    two = runner.invoke(app, ["correct-batch", *map(str, _paths(frag)[:2]), "--out", str(tmp_path / "y.jsonl")])
    assert two.exit_code == 1 and "add --join" in two.output


# --------------------------------------------------------------------------- rerank fusion

@pytest.fixture(scope="module")
def dev_joined(shared_data: Path):  # noqa: ANN201
    from cascade.batch.join import join as join_files

    return join_files([shared_data / "asr-outputs" / "librispeech-test-clean" / "dev" / f"{n}.csv" for n in SYSTEMS])


def _without(inp: FusionInput, drop: str) -> FusionInput:
    return inp.model_copy(update={"outputs": tuple(o for o in inp.outputs if o.system != drop)})


@pytest.fixture(scope="module")
def smollm2(settings):  # noqa: ANN001, ANN201
    from cascade.llm import load_backend

    return load_backend(settings.llm.model_copy(update={"model": "smollm2"}), settings.home)


def test_rerank_fusion_beats_google_and_rover_without_deepspeech(dev_joined) -> None:  # noqa: ANN001
    """Real dev utterances without DeepSpeech, where ROVER (15.6 %) is far worse than Google (10.9 %): Azure and
    Watson stop early on the same long utterances and their nulls outvote Google's words. Fusion with the
    reliability estimated from the 200 dev utterances (no references) leaves each system out of the vote after its
    last word and beats both. The shipped reranker reads no LLM score, so it needs no LLM."""
    from cascade.fusion import reliability
    from cascade.fusion.rerank import load_model, uses_lm
    from cascade.metrics import wer

    assert not uses_lm(load_model()) and "est_wer" in load_model().features
    inputs = [_without(i, "deepspeech") for i in dev_joined.inputs]
    no_refs = [i.model_copy(update={"reference": None}) for i in inputs]
    rel = reliability.choose_fallback(no_refs, reliability.estimate(no_refs, SYSTEMS[1:]))
    options = FusionOptions(method="rerank", weights=rel.weights, fallback=rel.fallback)
    refs = [i.reference for i in inputs]
    sctk = [fuse(i, "rover", options=FusionOptions(tail_vote=1.0)).text for i in inputs]
    google = [next(o.text for o in i.outputs if o.system == "google") for i in inputs]
    fused = [c.text for c in fuse_many(inputs, "rerank", options=options)]
    assert wer(refs, fused) < min(wer(refs, google), wer(refs, sctk)) - 0.01
    inp = next(i for i in inputs if i.id == "121-121726-0011")  # Azure and Watson wrote only its first word
    assert fuse(inp, "rover", options=FusionOptions(tail_vote=1.0)).text == "husband"
    out = fuse(inp, "rerank", options=options)
    assert out.method == "fusion" and out.text == normalize(inp.reference) == "husband the next thing to a wife"
    with pytest.raises(InvalidInput, match="needs an LLM backend"):
        fuse(inp, "ger")


def test_rerank_fusion_features_name_no_system(dev_joined) -> None:  # noqa: ANN001
    """Renaming the systems changes no feature: there is no per-vendor prior (which vendor is best changes)."""
    from cascade.fusion import rerank
    from cascade.fusion.fuse import _prepare

    for inp in dev_joined.inputs[:20]:
        renamed = inp.model_copy(update={"outputs": tuple(
            SystemText(system=f"vendor{i}", text=o.text) for i, o in enumerate(inp.outputs))})
        a, b = (rerank.candidate_features(_prepare(x, FusionOptions()), {}) for x in (inp, renamed))
        assert not a[0].any() and (a == b).all()


def test_train_rerank_fusion_on_dev_subsets(dev_joined) -> None:  # noqa: ANN001
    """Training on dev subsets of systems: weights for the named features, a margin, per-group dev figures that are
    never worse than ROVER (out of fold). Agreement/length features only here (no LLM: quick); the shipped model's
    LLM features are exercised above."""
    from cascade.fusion import rerank
    from cascade.fusion.fuse import _prepare

    inputs = dev_joined.inputs[:20]
    groups = {}
    for drop in (None, "deepspeech"):
        keep = [n for n in SYSTEMS if n != drop]
        groups["+".join(keep)] = [_prepare(i.model_copy(update={"outputs": tuple(o for o in i.outputs if o.system in keep)}),
                                           FusionOptions()) for i in inputs]
    lm = {}
    trained = rerank.train(groups, lm, name="t", l2s=(1e-2,))
    assert trained.model.features == rerank.FEATURES and len(trained.model.weights[rerank.STYLE]) == len(rerank.FEATURES)
    assert trained.model.margins[rerank.STYLE] >= 0
    assert set(trained.rover) == set(groups) and all(trained.rerank[g] <= trained.rover[g] + 1e-9 for g in groups)
    with pytest.raises(InvalidInput, match="too little training data"):
        rerank.train({"x": groups["deepspeech+google+azure+watson"][:3]}, lm)


def test_correct_batch_join_rerank(frag: Path, tmp_path: Path) -> None:
    recs = _run_join(_paths(frag), tmp_path / "fused.jsonl", "--correct", "rerank")
    assert len(recs) == 7 and all(r["method"] == "fusion" and r["corrected"] for r in recs)
    assert all(r["corrected"] in {s["text"] for s in r["scores"]} for r in recs)  # a vetted candidate
    assert all(r["corrected"] in {normalize(t) for t in r["systems"].values()} | {r["scores"][0]["text"]} for r in recs)


def test_an_nbest_reranker_is_not_a_fusion_reranker() -> None:
    from cascade.fusion.rerank import load_model

    with pytest.raises(InvalidInput, match="not a fusion reranker"):
        load_model("smollm2-mwer")


@pytest.fixture(scope="module")
def llm_service(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from services.common.testing import running_service

    with running_service("llm", log_dir=tmp_path_factory.mktemp("llm-fuse"), ready_timeout=600) as svc:
        yield svc


def test_service_fuse_matches_library_and_runs_llm(llm_service, smollm2, frag: Path) -> None:  # noqa: ANN001
    joined = join(_paths(frag))
    inp = min(joined.inputs, key=lambda i: sum(len(o.text) for o in i.outputs))  # the shortest: quick generation
    body = {"input": inp.model_dump(), "method": "rover"}
    got = httpx.post(f"{llm_service.url}/v1/fuse", json=body, timeout=120)
    assert got.status_code == 200, got.text
    assert got.json()["text"] == fuse(inp, "rover").text and got.json()["method"] == "rover"

    reranked = httpx.post(f"{llm_service.url}/v1/fuse", json={**body, "method": "rerank"}, timeout=120)
    assert reranked.status_code == 200, reranked.text
    assert reranked.json()["text"] == fuse(inp, "rerank", backend=smollm2).text
    assert reranked.json()["guards"]["reranker"] == "fusion-mwer"
    ger = httpx.post(f"{llm_service.url}/v1/fuse", json={**body, "method": "ger"}, timeout=600).json()
    assert ger["method"] == "fusion" and ger["text"].strip()
    assert ger["raw_output"] is not None  # the real LLM wrote something
    if ger["status"] == "fallback":  # guards refused the LLM's text: the transcript is a vetted candidate
        assert ger["fallback_reason"] and ger["text"] in {s["text"] for s in ger["scores"] if s["source"] != "llm"}

    bad = httpx.post(f"{llm_service.url}/v1/fuse", json={"input": {"outputs": []}, "method": "ger"}, timeout=60)
    assert bad.status_code == 400 and "no system outputs" in bad.json()["error"]["message"]
    unknown = httpx.post(f"{llm_service.url}/v1/fuse", json={**body, "method": "vote"}, timeout=60)
    assert unknown.status_code in (400, 422) and "error" in unknown.json()


# --------------------------------------------------------------------------- reliability (reference-free)


def _degraded(inputs, name: str, rate: float = 0.4, seed: int = 0) -> list:  # noqa: ANN001
    """`name`'s outputs with words dropped and replaced at `rate` (seeded): a system made worse on purpose."""
    import random

    rng = random.Random(seed)
    vocab = sorted({w for i in inputs for o in i.outputs for w in normalize(o.text).split()})

    def spoil(text: str) -> str:
        out = []
        for w in normalize(text).split():
            x = rng.random()
            if x >= rate / 2:
                out.append(rng.choice(vocab) if x < rate else w)
        return " ".join(out)

    return [i.model_copy(update={"outputs": tuple(o.model_copy(update={"text": spoil(o.text)}) if o.system == name else o
                                                  for o in i.outputs)}) for i in inputs]


def test_reliability_ranks_real_systems_without_references(dev_joined) -> None:  # noqa: ANN001
    """Estimated from the 200 dev utterances alone (the references are never read): DeepSpeech and Google, the two
    best by their real WER (7.8 / 10.9 %), rank above Azure and Watson (19.7 / 20.5 %), whose shared early stops
    would make them look best under a plain pairwise (independence) estimate."""
    from cascade.fusion import reliability

    no_refs = [i.model_copy(update={"reference": None}) for i in dev_joined.inputs]
    rel = reliability.estimate(no_refs, SYSTEMS)
    wer = {s.system: s.wer for s in rel.systems}
    assert rel.method == "pairwise" and rel.best == "deepspeech" and rel.utterances == 200
    assert max(wer["deepspeech"], wer["google"]) < min(wer["azure"], wer["watson"])
    assert all(s.weight == pytest.approx(reliability.weight_of(s.wer), abs=1e-3) for s in rel.systems)
    # the weighted vote (each system silent after its last word) ranks above the best system, with every system and
    # without DeepSpeech (dev: 5.80 against 7.76 %, and 8.28 against Google's 10.90 %)
    assert reliability.choose_fallback(no_refs, rel).fallback == "rover"
    gaw = [_without(i, "deepspeech") for i in no_refs]
    three = reliability.choose_fallback(gaw, reliability.estimate(gaw, SYSTEMS[1:]))
    assert three.best == "google" and three.fallback == "rover"
    # the vote as SCTK casts it (two systems that stop early outvote Google's last words) ranks below Google
    sctk = reliability.choose_fallback(gaw, reliability.estimate(gaw, SYSTEMS[1:]), tail=1.0)
    assert sctk.fallback == "best"


@pytest.mark.parametrize("spoilt", ["google", "azure", "watson"])
def test_a_system_made_worse_on_purpose_gets_a_lower_weight(dev_joined, spoilt: str) -> None:  # noqa: ANN001
    from cascade.fusion import reliability

    names = SYSTEMS[1:]
    inputs = [_without(i, "deepspeech") for i in dev_joined.inputs[:120]]
    before = reliability.estimate(inputs, names).weights
    after = reliability.estimate(_degraded(inputs, spoilt), names).weights
    assert after[spoilt] < before[spoilt] - 0.3
    assert min(after, key=after.get) == spoilt


@pytest.mark.parametrize("intact", ["google", "azure", "watson"])
def test_fusion_is_never_worse_than_the_one_system_left_intact(dev_joined, intact: str) -> None:  # noqa: ANN001
    """The synthetic check: of Google + Azure + Watson on 120 dev utterances, all but `intact` made worse on purpose,
    so one system is far better than the rest; fusion (reliability estimated without references) is no worse."""
    from cascade.fusion import reliability
    from cascade.metrics import wer

    names = SYSTEMS[1:]
    inputs = [_without(i, "deepspeech") for i in dev_joined.inputs[:120]]
    for k, spoilt in enumerate(n for n in names if n != intact):
        inputs = _degraded(inputs, spoilt, seed=k)
    rel = reliability.choose_fallback(inputs, reliability.estimate(inputs, names))
    assert rel.best == intact
    fused = [c.text for c in fuse_many(inputs, "rerank", options=FusionOptions(weights=rel.weights, fallback=rel.fallback))]
    refs = [i.reference for i in inputs]
    alone = [next(o.text for o in i.outputs if o.system == intact) for i in inputs]
    assert wer(refs, fused) <= wer(refs, alone)


def test_weighted_rover_votes() -> None:
    from cascade.fusion.rover import rover

    systems = ["the cat sat on the mat", "a cat sat on a mat", "a cat sat on a hat"]
    assert rover(systems, [1.0, 1.0, 1.0]).text == rover(systems).text == "a cat sat on a mat"
    assert rover(systems, [3.0, 1.0, 1.0]).text == "the cat sat on the mat"  # one trusted voter outweighs two
    assert rover(systems, [1.5, 1.0, 1.0]).text == "a cat sat on a mat"
    # a word only the last system inserted: its weight counts for that word, not for the others' nulls
    assert rover(["go home", "go home", "go back home"], [1.0, 1.0, 3.0]).text == "go back home"
    assert rover(["go home", "go home", "go back home"], [1.0, 1.0, 1.5]).text == "go home"
    with pytest.raises(InvalidInput, match="weights"):
        rover(systems, [1.0, 2.0])


def test_fusion_falls_back_to_the_estimated_best_system() -> None:
    """With weights, what fusion keeps when nothing beats it is the best system's text, not ROVER's vote."""
    inp = FusionInput(id="u", outputs=(SystemText(system="good", text="she sells sea shells by the sea shore"),
                                       SystemText(system="weak1", text="she sell see shells by a see shore"),
                                       SystemText(system="weak2", text="she sells see shells by a see shore")))
    weights = {"good": 2.0, "weak1": 1.2, "weak2": 1.1}
    assert fuse(inp, "rover").text == "she sells see shells by a see shore"  # the two weak systems outvote the good one
    closed = FusionOptions(weights=weights, rerank_margin=1e9)
    out = fuse(inp, "rerank", options=closed)  # the shipped reranker reads no LLM score: no backend needed
    assert out.text == "she sells sea shells by the sea shore" and out.guards["base"] == "good"
    picky = fuse(inp, "rescore", options=FusionOptions(weights=weights, min_agreement_gain=1e9))
    assert picky.text == out.text and picky.fallback_reason == "abstained"
    to_rover = fuse(inp, "rerank", options=closed.model_copy(update={"fallback": "rover"}))
    assert to_rover.text == "she sells see shells by a see shore"  # where the estimate ranks the vote first, it is the fallback


def test_correct_batch_join_prints_and_takes_weights(frag: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["correct-batch", "--join", *map(str, _paths(frag)), "--out", str(tmp_path / "a.jsonl"),
                                 "--correct", "rover"])
    assert result.exit_code == 0, result.output
    assert "system reliability" in result.output and "estimated from 7 utterances without references" in result.output
    heavy = "deepspeech=0.5,google=0.5,azure=0.5,watson=9"
    given = runner.invoke(app, ["correct-batch", "--join", *map(str, _paths(frag)), "--out", str(tmp_path / "b.jsonl"),
                                "--correct", "rover", "--weights", heavy])
    assert given.exit_code == 0, given.output
    assert "given by --weights" in given.output and "watson (best)" in given.output
    recs = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    for rec in recs:  # watson outweighs the other three together: its words win wherever it has the utterance
        if "watson" in rec["systems"]:
            assert rec["corrected"] == normalize(rec["systems"]["watson"]), rec
    for bad, needle in (("google=2", "no weight for"), ("google=x", "NAME=NUMBER"), ("nobody=1," + heavy, "no system named"),
                        (heavy.replace("9", "-1"), "positive")):
        fail = runner.invoke(app, ["correct-batch", "--join", *map(str, _paths(frag)), "--out",
                                   str(tmp_path / "c.jsonl"), "--weights", bad])
        assert fail.exit_code == 1 and needle in fail.output and "Traceback" not in fail.output, (bad, fail.output)
    alone = runner.invoke(app, ["correct-batch", str(_paths(frag)[0]), "--out", str(tmp_path / "d.jsonl"), "--weights", heavy])
    assert alone.exit_code == 1 and "add --join" in alone.output
