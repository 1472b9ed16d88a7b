"""tuneflow_artifacts against real tuneflow outputs. Every input comes from
an environment variable; a test whose variables are unset is skipped.

Path lists are separated by ':' (os.pathsep). Raw exports
(``tuneflow export PIPELINE STAGE.OUTPUT --to PATH``) are what they name:

TUNEFLOW_TEST_DATASET     dataset folders (an ingest/augment output: whole or a split):
                          read, validated item by item, and rewritten byte for byte
TUNEFLOW_TEST_MODEL       model folders (pretrain / fine-tune / freeze): read, checked
                          against the architecture, rewritten byte for byte
TUNEFLOW_TEST_EMBEDDINGS  embeddings folders (extract): read, rewritten byte for byte
TUNEFLOW_TEST_EXPORT      `--format npy` / `--format safetensors` exports of extract
                          stages: each must equal one of TUNEFLOW_TEST_EMBEDDINGS
TUNEFLOW_TEST_POLICY      policy.json files (augment.policy): read, rewritten byte for byte
TUNEFLOW_TEST_METRICS     metrics.json files (evaluate.metrics): read, rewritten byte for byte
TUNEFLOW_TEST_PLOTS       plots folders (evaluate.plots): PNGs of 720 x 540
TUNEFLOW_TEST_CASES       a JSON file listing extract stages to reproduce in PyTorch:
                          [{"name": "x_ft", "model": "img_ft", "dataset": "digits.test",
                            "embeddings": "x_ft", "flip": false, "segment": 0}, ...]
                          (paths relative to the JSON file; flip, segment and batch as the
                          stage set them, default false, 0, 64). Its paths also join the lists
                          above. Without it, exactly one path in each of MODEL, DATASET and
                          EMBEDDINGS makes one case, with TUNEFLOW_TEST_FLIP (0 or 1) and
                          TUNEFLOW_TEST_SEGMENT.
TUNEFLOW_TEST_TOLERANCE   largest absolute difference allowed between the PyTorch loader
                          and tuneflow's extract (embeddings and scores; default 1e-5)
TUNEFLOW_BIN              the tuneflow binary (with tuneflow-torch beside it, or
                          TUNEFLOW_TORCH_BIN): models and datasets written in Python go
                          through tuneflow's `extract` (a command stage hands them over),
                          which must give the embeddings PyTorch gives

The measured differences are printed on stderr. Run:
    python -m unittest discover -s python/tests
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tuneflow_artifacts as ta  # noqa: E402

try:
    import torch
    from tuneflow_artifacts.torch_model import extract, load_model, save_model
    from torch_helpers import CONFIGS, randomised
except ImportError:  # pragma: no cover
    torch = None


def paths(var):
    return [Path(p) for p in os.environ.get(var, "").split(os.pathsep) if p]


def cases():
    """The extract cases: (name, model, dataset, embeddings, flip, segment, batch)."""
    file = os.environ.get("TUNEFLOW_TEST_CASES")
    if file:
        base = Path(file).parent
        return [(c.get("name", c["embeddings"]), base / c["model"], base / c["dataset"], base / c["embeddings"],
                 bool(c.get("flip", False)), int(c.get("segment", 0)), int(c.get("batch", 64)))
                for c in json.loads(Path(file).read_text())]
    m, d, e = paths("TUNEFLOW_TEST_MODEL"), paths("TUNEFLOW_TEST_DATASET"), paths("TUNEFLOW_TEST_EMBEDDINGS")
    if len(m) == len(d) == len(e) == 1:
        return [(e[0].name, m[0], d[0], e[0], os.environ.get("TUNEFLOW_TEST_FLIP", "0") in ("1", "true"),
                 int(os.environ.get("TUNEFLOW_TEST_SEGMENT", "0")), 64)]
    return []


def inputs(var, index):
    """The paths of ``var`` plus those the cases name at ``index``."""
    out = paths(var) + [c[index] for c in cases()]
    return list(dict.fromkeys(out))


def files(folder):
    return sorted(p.relative_to(folder) for p in Path(folder).rglob("*") if p.is_file())


TOLERANCE = float(os.environ.get("TUNEFLOW_TEST_TOLERANCE", "1e-5"))


class Temp(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def need(self, items, var):
        if not items:
            self.skipTest(f"{var} is not set")
        return items

    def assertSameFiles(self, a, b, skip=()):
        self.assertEqual(files(a), files(b))
        for f in files(a):
            if str(f) not in skip:
                self.assertEqual((Path(a) / f).read_bytes(), (Path(b) / f).read_bytes(), f"{a}: {f} differs")


class RealArtifacts(Temp):
    def test_datasets_read_validate_and_rewrite_to_the_same_bytes(self):
        for path in self.need(inputs("TUNEFLOW_TEST_DATASET", 2), "TUNEFLOW_TEST_DATASET"):
            with self.subTest(str(path)):
                ds = ta.read_dataset(path)
                ds.validate()
                info = ds.info
                want = {"image": tuple(info.shape), "fbank": (None, info.shape[0]), "waveform": (None,)}[info.kind]
                for it in ds:
                    self.assertEqual(tuple(w or s for w, s in zip(want, it.data.shape)), it.data.shape)
                    self.assertEqual(len(it.data.shape), len(want))
                    self.assertLess(it.label, len(info.classes))
                splits = dict(info.splits)
                if info.split is not None:
                    splits[info.split] = ds.indices
                out = self.tmp / path.name
                ta.write_dataset(out, (ds.item_at(i) for i in range(info.items)), kind=info.kind,
                                 classes=info.classes, splits=splits, split=info.split, trials=ds.trials,
                                 skipped=info.skipped, skipped_examples=info.skipped_examples,
                                 format_version=info.format_version)
                quirk = ds.trials is None and info.trials > 0  # see docs/artifacts.md: `trials` without trials.txt
                self.assertSameFiles(path, out, skip={"dataset.json"} if quirk else ())
                if quirk:
                    got = json.loads((out / "dataset.json").read_text())
                    self.assertEqual({**got, "trials": info.trials}, json.loads((path / "dataset.json").read_text()))

    def test_models_read_and_rewrite_to_the_same_bytes(self):
        for path in self.need(inputs("TUNEFLOW_TEST_MODEL", 1), "TUNEFLOW_TEST_MODEL"):
            with self.subTest(str(path)):
                m = ta.read_model(path)
                self.assertTrue(all(v.dtype == np.float32 for v in m.tensors.values()))
                ta.write_model(self.tmp / path.name, m.tensors, m.config, m.metrics, m.freeze)
                self.assertSameFiles(path, self.tmp / path.name)

    def test_embeddings_read_and_rewrite_to_the_same_bytes(self):
        for path in self.need(inputs("TUNEFLOW_TEST_EMBEDDINGS", 3), "TUNEFLOW_TEST_EMBEDDINGS"):
            with self.subTest(str(path)):
                e = ta.read_embeddings(path)
                if e.normalized:
                    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1, atol=1e-5)
                ta.write_embeddings(self.tmp / path.name, e)
                self.assertSameFiles(path, self.tmp / path.name)

    def test_exports_hold_an_embeddings_artifact(self):
        exports = self.need(paths("TUNEFLOW_TEST_EXPORT"), "TUNEFLOW_TEST_EXPORT")
        known = [ta.read_embeddings(p) for p in inputs("TUNEFLOW_TEST_EMBEDDINGS", 3)]
        for path in exports:
            with self.subTest(str(path)):
                x = ta.read_export(path)
                match = [e for e in known if np.array_equal(e.vectors, x["embeddings"])]
                self.assertTrue(match, f"{path} matches none of TUNEFLOW_TEST_EMBEDDINGS")
                if "labels" in x:
                    self.assertEqual(x["labels"].dtype, np.int64)
                    self.assertTrue(any(np.array_equal(e.labels, x["labels"]) and e.ids == x["ids"]
                                        and e.classes == x["classes"] and e.normalized == x["normalized"]
                                        for e in match))

    def test_policies_read_and_rewrite_to_the_same_bytes(self):
        for path in self.need(paths("TUNEFLOW_TEST_POLICY"), "TUNEFLOW_TEST_POLICY"):
            with self.subTest(str(path)):
                out = ta.write_policy(self.tmp / "policy.json", **ta.read_policy(path))
                self.assertEqual(out.read_bytes(), Path(path).read_bytes())

    def test_metrics_read_and_rewrite_to_the_same_bytes(self):
        for path in self.need(paths("TUNEFLOW_TEST_METRICS"), "TUNEFLOW_TEST_METRICS"):
            with self.subTest(str(path)):
                report = ta.read_metrics(path)
                self.assertIn("columns", report)
                self.assertTrue(ta.flatten_metrics(report))
                out = ta.write_metrics(self.tmp / "metrics.json", report)
                self.assertEqual(out.read_bytes(), Path(path).read_bytes())

    def test_plots_are_pngs(self):
        for path in self.need(paths("TUNEFLOW_TEST_PLOTS"), "TUNEFLOW_TEST_PLOTS"):
            with self.subTest(str(path)):
                for p in ta.list_plots(path):
                    self.assertIn(p.name, ("roc.png", "det.png", "training.png"))
                    self.assertEqual(p.width, 720)
                    # training.png: a 270-high row per training stage under
                    # a 40-high legend strip, at least 540 in all.
                    rows = [max(540, 40 + 270 * n) for n in range(1, 64)]
                    self.assertTrue(p.height == 540 or (p.name == "training.png" and p.height in rows),
                                    (p.name, p.height))
                curves = ta.read_curves(path)
                self.assertTrue(curves, "evaluate keeps its operating points")
                for label, points in curves.items():
                    self.assertEqual(points[0][0], 0.0, label)  # from accepting nothing
                    self.assertEqual(points[-1], (1.0, 0.0), label)  # to accepting all


def compare(test, name, got, want):
    """Asserts that two embeddings artifacts agree; returns the largest
    differences of vectors and scores."""
    test.assertEqual(got.meta(), want.meta(), name)
    dv = float(np.abs(got.vectors - want.vectors).max()) if want.count else 0.0
    ds = None
    if want.scores is not None:
        ds = float(np.abs(got.scores - want.scores).max()) if want.count else 0.0
    test.assertLessEqual(dv, TOLERANCE, f"{name}: embeddings differ by {dv}")
    test.assertLessEqual(ds or 0.0, TOLERANCE, f"{name}: scores differ by {ds}")
    if want.trials is None:
        test.assertIsNone(got.trials)
    else:
        np.testing.assert_array_equal(got.trials, want.trials)
    print(f"  {name}: max |diff| embeddings {dv:.3g}, scores {'-' if ds is None else format(ds, '.3g')}",
          file=sys.stderr)
    return dv, ds


@unittest.skipIf(torch is None, "torch is not installed")
class LoaderAgainstExtract(Temp):
    def test_the_pytorch_loader_gives_extracts_embeddings(self):
        for name, model, data, emb, flip, segment, batch in self.need(cases(), "TUNEFLOW_TEST_CASES"):
            with self.subTest(name):
                m = load_model(model)
                got = extract(m, ta.read_dataset(data), normalize=ta.read_embeddings(emb).normalized,
                              flip=flip, segment=segment, batch=batch)
                compare(self, name, got, ta.read_embeddings(emb))
                save_model(m, self.tmp / name)  # and back to a folder, unchanged
                self.assertSameFiles(model, self.tmp / name)


ROUND_TRIP = {  # extract stage -> (model config, dataset, extract params)
    "x_grey": ("r10-grey-softmax", "grey", {"flip": True}),
    "x_grey_f32": ("r10-grey-softmax", "grey_f32", {"normalize": False}),
    "x_rgb_cos": ("r18-rgb-cosface-stride2", "rgb", {"batch": 3}),
    "x_rgb_arc": ("r50-rgb-arcface", "rgb", {"flip": True, "normalize": False}),
    "x_grey_triplet": ("r34-grey-triplet", "grey", {}),
    "x_fbank": ("r10-fbank24-stride2", "fbank24", {}),
    "x_fbank_seg": ("r10-fbank24-stride2", "fbank24", {"segment": 30, "normalize": False}),
    "x_fbank50": ("r50-fbank40-triplet", "fbank40", {"segment": 25}),
}


def datasets(root):
    rng = np.random.default_rng(7)
    grey = [(f"g{i}", i % 3, rng.integers(0, 256, (1, 12, 12), dtype=np.uint8)) for i in range(9)]
    kw = {"classes": ["a", "b", "c"], "splits": {"test": [1, 2, 4, 5, 7, 8], "train": [0, 3, 6]}}
    out = {"grey": ta.write_dataset(root / "grey", grey, kind="image", split="test",
                                    trials=[(1, 1, 4), (0, 2, 4), (1, 0, 3)], **kw),
           "grey_f32": ta.write_dataset(root / "grey_f32", [(f"{i}#0", l, (a / 255.0).astype(np.float32))
                                                            for i, (_, l, a) in enumerate(grey)],
                                        kind="image", classes=kw["classes"]),
           "rgb": ta.write_dataset(root / "rgb", [(f"c{i}", i % 2, rng.integers(0, 256, (3, 16, 16), dtype=np.uint8))
                                                  for i in range(7)], kind="image", classes=["x", "y"])}
    for bins in (24, 40):
        items = [(f"s{i % 3}/u{i}.wav", i % 3, rng.standard_normal((20 + 11 * i, bins)).astype(np.float32))
                 for i in range(6)]
        out[f"fbank{bins}"] = ta.write_dataset(root / f"fbank{bins}", items, kind="fbank",
                                               classes=["s0", "s1", "s2"], trials=[(1, 0, 3), (0, 1, 2)])
    return out


@unittest.skipIf(torch is None, "torch is not installed")
class PythonArtifactsThroughTuneflow(Temp):
    def test_tuneflow_extract_reads_python_models_and_datasets(self):
        binary = os.environ.get("TUNEFLOW_BIN")
        if not binary:
            self.skipTest("TUNEFLOW_BIN is not set")
        src = self.tmp / "src"
        data = datasets(src)
        models = {}
        for i, key in enumerate(sorted({c[0] for c in ROUND_TRIP.values()})):
            models[key] = randomised(CONFIGS[key], seed=i)
            save_model(models[key], src / key)
        outs = [f"in/{p.name}" for p in sorted(src.iterdir())]
        toml = ['[pipeline]\ndevice = "cpu"\n\n[stage.imp]\nkind = "command"\n'
                'cmd = "rm -rf in && cp -r src in"\ndeps = ["src"]\n'
                f"outs = {json.dumps(outs)}\n"]
        for stage, (key, ds, params) in ROUND_TRIP.items():
            extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in params.items())
            toml.append(f'\n[stage.{stage}]\nkind = "extract"\nmodel = "imp.in/{key}"\ndata = "imp.in/{ds}"\n{extra}')
        (self.tmp / "p.toml").write_text("".join(toml))
        env = {k: v for k, v in os.environ.items() if k != "TUNEFLOW_CACHE_DIR"}
        env["NO_COLOR"] = "1"

        def tuneflow(*args):
            r = subprocess.run([binary, *args], cwd=self.tmp, env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"tuneflow {' '.join(args)}:\n{r.stdout}\n{r.stderr}")

        tuneflow("run", "--jobs", "1", "p.toml")
        for stage, (key, ds, params) in ROUND_TRIP.items():
            with self.subTest(stage):
                tuneflow("export", "p.toml", stage, "--to", f"out/{stage}")
                got = extract(models[key], ta.read_dataset(data[ds]), **params)
                compare(self, f"{stage} ({key})", got, ta.read_embeddings(self.tmp / "out" / stage))


if __name__ == "__main__":
    unittest.main()
