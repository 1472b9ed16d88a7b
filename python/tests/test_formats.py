"""Round trips and rejections of every artifact format, on synthetic data
(numpy and safetensors only; no tuneflow, no torch).

Run: python -m unittest discover -s python/tests
"""

import json
import shutil
import struct
import sys
import tempfile
import unittest
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tuneflow_artifacts as ta  # noqa: E402
from tuneflow_artifacts import dataset as dataset_mod  # noqa: E402
from tuneflow_artifacts.model import architecture, check_config  # noqa: E402


def image_items(n=7, c=1, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"img{i}.png", i % 3, rng.integers(0, 256, (c, size, size), dtype=np.uint8)) for i in range(n)]


def fbank_items(n=5, bins=6, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"spk{i % 2}/u{i}.wav", i % 2, rng.standard_normal((3 + i, bins)).astype(np.float32)) for i in range(n)]


def config(**model):
    return {"model": {"depth": 10, "width": 4, "embedding": 8, "in-channels": 1, **model},
            "classes": ["a", "b", "c"], "data-kind": "image", "data-shape": [1, 8, 8]}


def random_tensors(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32)
            for k, s in architecture(check_config(cfg)).items()}


def png(w=3, h=2):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\xff" * (3 * w) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Temp(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def assertRejects(self, needle, fn, *args, **kw):
        with self.assertRaises(ta.ArtifactError) as cm:
            fn(*args, **kw)
        self.assertIn(needle, str(cm.exception))
        return cm.exception


class DatasetTests(Temp):
    def write_images(self, name="ds", **kw):
        kw.setdefault("splits", {"train": [0, 2, 4, 6], "test": [1, 3], "val": [5]})
        return ta.write_dataset(self.tmp / name, image_items(), kind="image", classes=["a", "b", "c"], **kw)

    def test_image_round_trip_with_split_and_trials(self):
        items = image_items()
        self.write_images(split="train", trials=[(1, 0, 3), (0, 2, 5)], skipped=2, skipped_examples=["x: bad"])
        ds = ta.read_dataset(self.tmp / "ds")
        ds.validate()
        self.assertEqual((len(ds), ds.info.items, ds.info.split), (4, 7, "train"))
        self.assertEqual(ds.info.splits, {"test": 2, "train": 4, "val": 1})
        self.assertEqual((ds.info.kind, ds.info.dtype, ds.info.shape), ("image", "u8", [1, 4, 4]))
        self.assertEqual((ds.info.skipped, ds.info.skipped_examples, ds.info.trials), (2, ["x: bad"], 2))
        self.assertEqual(ds.trials.tolist(), [[1, 0, 3], [0, 2, 5]])
        for it, i in zip(ds, [0, 2, 4, 6]):
            self.assertEqual((it.index, it.id, it.label, it.frames), (i, items[i][0], items[i][1], 1))
            np.testing.assert_array_equal(it.data, items[i][2])
        self.assertEqual(ds.labels.tolist(), [0, 2, 1, 0])
        self.assertEqual(json.loads((self.tmp / "ds" / "dataset.json").read_text())["format-version"], 1)

    def test_record_bytes_are_little_endian_24_byte_records(self):
        self.write_images()
        raw = (self.tmp / "ds" / "items.bin").read_bytes()
        self.assertEqual(len(raw), 7 * 24)
        self.assertEqual(struct.unpack("<IIQII", raw[24:48]), (1, 0, 16, 16, 1))
        self.assertFalse((self.tmp / "ds" / "split.bin").exists())

    def test_fbank_f32_images_and_waveforms_round_trip(self):
        items = fbank_items()
        ta.write_dataset(self.tmp / "f", items, kind="fbank", classes=["s0", "s1"])
        ds = ta.read_dataset(self.tmp / "f")
        ds.validate()
        self.assertEqual((ds.info.dtype, ds.info.shape), ("f32", [6]))
        for it, (i, l, a) in zip(ds, items):
            self.assertEqual((it.id, it.label, it.frames), (i, l, a.shape[0]))
            np.testing.assert_array_equal(it.data, a)
        f32 = [(f"{i}#0", 0, np.full((3, 2, 2), i / 3, np.float32)) for i in range(3)]
        ta.write_dataset(self.tmp / "c", f32, kind="image", classes=["x"])
        self.assertEqual(ta.read_dataset(self.tmp / "c").item(2).data.dtype, np.float32)
        wave = [("w.wav", 0, np.arange(-5, 5, dtype=np.int16))]
        ta.write_dataset(self.tmp / "w", wave, kind="waveform", classes=["x"])
        w = ta.read_dataset(self.tmp / "w")
        w.validate()
        self.assertEqual((w.info.dtype, w.info.shape, w[0].frames), ("i16", [1], 10))

    def test_splits_beside_the_dataset_as_ingest_lays_them_out(self):
        out = ta.write_dataset_splits(self.tmp / "dataset", image_items(), kind="image", classes=["a", "b", "c"],
                                      splits={"train": [0, 1, 2, 3], "val": [4], "test": [5, 6]})
        self.assertEqual(sorted(out), ["dataset", "test", "train", "val"])
        self.assertEqual(out["val"], self.tmp / "dataset-val")
        val = ta.read_dataset(out["val"])
        val.validate()
        self.assertEqual((len(val), val.info.split, val[0].index), (1, "val", 4))
        self.assertIsNone(ta.read_dataset(out["dataset"]).info.split)

    def test_items_stream_into_several_shards(self):
        old = dataset_mod.SHARD_BYTES
        dataset_mod.SHARD_BYTES = 40  # a new shard once one holds 40 bytes
        try:
            self.write_images()
        finally:
            dataset_mod.SHARD_BYTES = old
        ds = ta.read_dataset(self.tmp / "ds")
        self.assertEqual(sorted(p.name for p in (self.tmp / "ds" / "shards").iterdir()),
                         ["shard-00000.bin", "shard-00001.bin", "shard-00002.bin"])
        np.testing.assert_array_equal(ds[6].data, image_items()[6][2])

    def test_reader_rejects_malformed_folders(self):
        d = self.write_images(split="test")
        self.assertRejects("no `dataset.json`", ta.read_dataset, self.tmp / "nothing")
        info = json.loads((d / "dataset.json").read_text())
        for key, value, needle in [("classes", None, "missing field `classes`"),
                                   ("items", "7", "`items` must be an integer"),
                                   ("shape", [1, -4, 4], "`shape[1]`"),
                                   ("splits", [2], "`splits` must be an object")]:
            bad = dict(info)
            if value is None:
                del bad[key]
            else:
                bad[key] = value
            (d / "dataset.json").write_text(json.dumps(bad))
            self.assertRejects(needle, ta.read_dataset, d)
        (d / "dataset.json").write_text("{not json")
        self.assertRejects("bad JSON", ta.read_dataset, d)
        (d / "dataset.json").write_text(json.dumps(info))
        items = (d / "items.bin").read_bytes()
        (d / "items.bin").write_bytes(items + b"\0")
        self.assertRejects("not a multiple of 24", ta.read_dataset, d)
        (d / "items.bin").write_bytes(items)
        (d / "split.bin").write_bytes(struct.pack("<I", 7))
        self.assertRejects("split.bin names item 7", ta.read_dataset, d)
        (d / "split.bin").write_bytes(struct.pack("<I", 1))
        (d / "trials.txt").write_text("1 0 3\n\n")
        self.assertRejects("line 2: bad trial line", ta.read_dataset, d)
        (d / "trials.txt").unlink()
        (d / "shards" / "shard-00000.bin").unlink()
        self.assertRejects("no shard 0", ta.read_dataset, d)

    def test_validate_finds_what_tuneflow_only_finds_when_it_reads_an_item(self):
        d = self.write_images()
        info = json.loads((d / "dataset.json").read_text())
        (d / "dataset.json").write_text(json.dumps({**info, "items": 8}))
        self.assertRejects("says 8 items", ta.read_dataset(d).validate)
        (d / "dataset.json").write_text(json.dumps({**info, "classes": ["a", "b"]}))
        self.assertRejects("a label is 2", ta.read_dataset(d).validate)
        (d / "dataset.json").write_text(json.dumps({**info, "shape": [1, 4, 5]}))
        self.assertRejects("do not make an image", ta.read_dataset(d).item, 0)
        (d / "dataset.json").write_text(json.dumps({**info, "kind": "fbank", "dtype": "u8"}))
        self.assertRejects("`dtype` of fbank data must be f32", ta.read_dataset(d).validate)

    def test_writer_refuses_bad_items_and_leaves_nothing(self):
        w = self.tmp / "w"
        cases = [
            ([("a", 3, np.zeros((1, 2, 2), np.uint8))], {}, "item 0: `label` 3 is not below"),
            ([("a", 0, np.zeros((1, 2, 2), np.int32))], {}, "uint8 or float32"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8)), ("b", 0, np.zeros((1, 2, 3), np.uint8))], {},
             "item 1: u8 [1, 2, 3] differs"),
            ([("a\nb", 0, np.zeros((1, 2, 2), np.uint8))], {}, "line break"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8))], {"splits": {"test": [1]}}, "split `test` names an item"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8))], {"splits": {"test": 1}, "split": "test"}, "needs its indices"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8))], {"trials": [(2, 0, 0)]}, "label must be 0"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8))], {"trials": [(1, 0, 1)]}, "index outside 0..1"),
            ([("a", 0, np.zeros((1, 2, 2), np.uint8))], {"trials": [(1, 0)]}, "(label, i, j) rows"),
        ]
        for items, kw, needle in cases:
            self.assertRejects(needle, ta.write_dataset, w, items, kind="image", classes=["x", "y", "z"], **kw)
            self.assertFalse(w.exists() and any(w.iterdir()), needle)
            self.assertEqual([p for p in self.tmp.iterdir() if p.name.startswith(".")], [], "no temp folder left")
        self.assertRejects("`kind` must be one of", ta.write_dataset, w, [], kind="video", classes=[])
        self.assertRejects("frames x bins float32", ta.write_dataset, w, [("a", 0, np.zeros((2, 3)))],
                           kind="fbank", classes=["x"])
        self.write_images()
        self.assertRejects("not an empty folder", self.write_images)


class EmbeddingsTests(Temp):
    def sample(self, scores=True, trials=True):
        rng = np.random.default_rng(1)
        v = rng.standard_normal((3, 4)).astype(np.float32)
        return ta.Embeddings(vectors=v / np.linalg.norm(v, axis=1, keepdims=True), ids=["a", "b", "c"],
                             labels=np.array([0, 1, 1]), indices=np.array([4, 7, 9]), classes=["x", "y"],
                             normalized=True, scores=rng.standard_normal((3, 2)) if scores else None,
                             head_classes=["x", "y"] if scores else None,
                             trials=np.array([[1, 7, 9], [0, 4, 9]]) if trials else None)

    def test_round_trip(self):
        for scores, trials in [(True, True), (False, False)]:
            e = self.sample(scores, trials)
            out = self.tmp / f"e{scores}"
            ta.write_embeddings(out, e)
            back = ta.read_embeddings(out)
            np.testing.assert_array_equal(back.vectors, e.vectors)
            self.assertEqual(back.meta(), e.meta())
            if scores:
                np.testing.assert_array_equal(back.scores, e.scores.astype(np.float32))
                self.assertEqual(back.trials.tolist(), [[1, 7, 9], [0, 4, 9]])
            else:
                self.assertIsNone(back.scores)
                self.assertFalse((out / "scores.f32").exists() or (out / "trials.txt").exists())

    def test_file_layout(self):
        ta.write_embeddings(self.tmp / "e", np.array([[1.0, 2], [3, 4], [5, 6]]), ids=["a", "b", "c"],
                            labels=[0, 0, 1], classes=["x", "y"], normalized=False)
        raw = (self.tmp / "e" / "embeddings.f32").read_bytes()
        self.assertEqual(raw[:8], struct.pack("<ff", 1.0, 2.0))
        self.assertEqual((self.tmp / "e" / "items.json").read_text(),
                         '{"count":3,"dim":2,"ids":["a","b","c"],"labels":[0,0,1],"indices":[0,1,2],'
                         '"classes":["x","y"],"head-classes":null,"normalized":false}')

    def test_reader_rejects_malformed_artifacts(self):
        d = self.tmp / "e"
        ta.write_embeddings(d, self.sample())
        meta = json.loads((d / "items.json").read_text())
        self.assertRejects("has no `items.json`", ta.read_embeddings, self.tmp)
        for change, needle in [({"dim": None}, "missing field `dim`"), ({"count": 4}, "holds 12 values, not 4 x 4"),
                               ({"ids": ["a"]}, "`ids` has 1 entries"), ({"labels": [0, 1, 2]}, "`labels` holds 2"),
                               ({"normalized": 1}, "`normalized` must be true or false"),
                               ({"head-classes": None}, "no `head-classes`"),
                               ({"head-classes": ["x"]}, "not 3 x 1 head classes"),
                               ({"indices": [4, 4, 9]}, "holds an item twice")]:
            bad = {**meta, **change}
            if change.get("dim", 0) is None:
                del bad["dim"]
            (d / "items.json").write_text(json.dumps(bad))
            self.assertRejects(needle, ta.read_embeddings, d)
        (d / "items.json").write_text(json.dumps(meta))
        (d / "embeddings.f32").write_bytes((d / "embeddings.f32").read_bytes() + b"\0\0")
        self.assertRejects("not whole f32 values", ta.read_embeddings, d)
        (d / "embeddings.f32").write_bytes(b"\0" * 48)
        (d / "trials.txt").write_text("1 7\n")
        self.assertRejects("bad trial line", ta.read_embeddings, d)
        (d / "trials.txt").unlink()
        (d / "scores.f32").unlink()
        self.assertRejects("no `scores.f32`", ta.read_embeddings, d)

    def test_writer_refuses_bad_fields(self):
        e = self.sample()
        for change, needle in [({"vectors": np.zeros(3)}, "2-d float array"), ({"vectors": np.zeros((3, 0))}, "at least 1"),
                               ({"labels": np.array([0, 1])}, "`labels` must be 3 integers"),
                               ({"labels": np.array([0, 1, 5])}, "`labels` holds 5"),
                               ({"indices": np.array([0, -1, 2])}, "unsigned 32-bit"),
                               ({"scores": np.zeros((3, 3))}, "shape (3, 2)"), ({"head_classes": None}, "go together"),
                               ({"normalized": None}, "`normalized` must be true or false"),
                               ({"ids": ["a", "b", 3]}, "list of strings"),
                               ({"trials": np.array([[3, 1, 2]])}, "label must be 0")]:
            bad = ta.Embeddings(**{**e.__dict__, **change})
            self.assertRejects(needle, ta.write_embeddings, self.tmp / "x", bad)
        self.assertRejects("`normalized` must be", ta.write_embeddings, self.tmp / "y", np.ones((1, 2)),
                           ids=["a"], labels=[0], classes=["x"])


class ModelTests(Temp):
    def test_architecture_matches_the_rust_module_names(self):
        a = architecture(check_config(config()))
        self.assertEqual(len(a), 68)
        self.assertEqual(a["backbone.stem.conv.weight"], (4, 1, 3, 3))
        self.assertEqual(a["backbone.layer2.0.proj.weight"], (8, 4, 1, 1))
        self.assertNotIn("backbone.layer1.0.proj.weight", a)
        self.assertEqual(a["backbone.embedding.fc.weight"], (8, 32))
        self.assertEqual((a["head.weight"], a["head.bias"]), ((3, 8), (3,)))
        r50 = architecture(check_config({**config(depth=50, **{"in-channels": 3}), "data-shape": [3, 8, 8],
                                         "loss": {"kind": "triplet", "scale": 1.0, "margin": 0.3,
                                                  "easy-margin": False, "label-smoothing": 0.0, "per-class": 2}}))
        self.assertEqual((len(r50), r50["backbone.layer1.0.proj.weight"], r50["backbone.embedding.fc.weight"]),
                         (271, (16, 4, 1, 1), (8, 128)))
        spk = check_config({**config(pooling="stats", **{"stem-stride": 2}), "data-kind": "fbank", "data-shape": [24],
                            "loss": {"kind": "arcface", "scale": 30.0, "margin": 0.5, "easy-margin": False,
                                     "label-smoothing": 0.0, "per-class": 4}})
        s = architecture(spk)
        self.assertEqual((s["backbone.embedding.fc.weight"], s["head.weight"], "head.bias" in s), ((8, 128), (3, 8), False))
        self.assertEqual([len(architecture(check_config(config(depth=d)))) for d in (18, 34)], [108, 188])

    def test_round_trip_fills_the_defaults(self):
        cfg = {**config(), "eval-ops": [{"op": "normalize", "mean": 0.5, "std": [0.25]}]}
        t = random_tensors(cfg)
        metrics = {"epochs": [{"epoch": 1, "train_loss": 1.5, "train_acc": 0.5, "val_loss": None,
                               "val_acc": None, "lr": 0.1}], "best_epoch": None, "stopped_early": False}
        freeze = {"policy": {"freeze": ["backbone.stem"]},
                  "frozen": [k for k in t if k.startswith("backbone.stem.")]}
        ta.write_model(self.tmp / "m", t, cfg, metrics, freeze)
        m = ta.read_model(self.tmp / "m")
        self.assertEqual(sorted(m.tensors), sorted(t))
        for k in t:
            np.testing.assert_array_equal(m.tensors[k], t[k])
        self.assertEqual(m.config["model"]["pooling"], "avg")
        self.assertEqual(m.config["loss"]["kind"], "softmax")
        self.assertEqual(m.config["eval-ops"], [{"mean": [0.5], "op": "normalize", "std": [0.25]}])
        self.assertEqual((m.config["source"], m.config["frozen"]), ("", []))
        self.assertEqual((m.metrics, m.freeze), (metrics, freeze))
        text = (self.tmp / "m" / "config.json").read_text()
        self.assertTrue(text.startswith('{\n  "classes": [\n    "a",'), text[:40])
        ta.write_model(self.tmp / "n", t, cfg)
        self.assertEqual(ta.read_model(self.tmp / "n").metrics, {"best_epoch": None, "epochs": [], "stopped_early": False})

    def test_writer_refuses_what_tuneflow_could_not_load(self):
        cfg, t = config(), random_tensors(config())
        wrong = dict(t, **{"backbone.stem.conv.weight": np.zeros((4, 3, 3, 3), np.float32)})
        extra = dict(t, **{"backbone.stem.bn.num_batches_tracked": np.zeros((), np.float32)})
        missing = {k: v for k, v in t.items() if k != "head.bias"}
        ints = dict(t, **{"head.bias": np.zeros(3, np.int64)})
        for tensors, c, needle in [
            (wrong, cfg, "`backbone.stem.conv.weight` has shape [4, 3, 3, 3]"),
            (extra, cfg, "1 unexpected key(s)"), (missing, cfg, "1 missing key(s) ['head.bias']"),
            (ints, cfg, "floating-point"),
            (t, {k: v for k, v in cfg.items() if k != "classes"}, "missing field `classes`"),
            (t, config(depth=11), "depth` 11 is not supported"), (t, config(arch="vgg"), "must be `resnet`"),
            (t, config(colour=1), "unknown field `colour`"), (t, config(pooling="stats"), "must be `avg` for image"),
            (t, config(**{"in-channels": 3}), "in-channels` must be 1"),
            (t, {**cfg, "data-kind": "waveform"}, "`data-kind` must be `image` or `fbank`"),
            (t, {**cfg, "data-shape": [1, 8]}, "3 positive integer(s)"),
            (t, {**cfg, "loss": {"kind": "softmax"}}, "missing field `scale`"),
            (t, {**cfg, "eval-ops": [{"op": "blur"}]}, "unknown op `blur`"),
            (t, {**cfg, "eval-ops": [{"op": "normalize", "mean": 0.5}]}, "needs `std`"),
            (t, {**cfg, "eval-ops": [{"op": "flip", "q": 1}]}, "has no field `q`"),
        ]:
            self.assertRejects(needle, ta.write_model, self.tmp / "m", tensors, c)
            self.assertFalse((self.tmp / "m").exists(), needle)
        self.assertRejects("`policy` must be", ta.write_model, self.tmp / "m", t, cfg,
                           freeze={"policy": {"freeze": [], "trainable": []}, "frozen": []})
        self.assertRejects("not backbone tensors", ta.write_model, self.tmp / "m", t, cfg,
                           freeze={"policy": {"freeze": ["head"]}, "frozen": ["head.weight"]})

    def test_reader_rejects_malformed_folders(self):
        t = random_tensors(config())
        d = ta.write_model(self.tmp / "m", t, config())
        self.assertRejects("has no `config.json`", ta.read_model, self.tmp)
        (d / "freeze.json").write_text('{"policy": {"thaw": []}, "frozen": []}')
        self.assertRejects("`policy` must be", ta.read_model, d)
        (d / "freeze.json").unlink()
        (d / "model.safetensors").write_bytes(b"\xff" * 16)
        self.assertRejects("not a safetensors file", ta.read_model, d)
        shutil.rmtree(d)
        from safetensors.numpy import save_file
        ta.write_model(d, t, config())
        save_file({k: v for k, v in t.items() if k != "head.weight"}, str(d / "model.safetensors"))
        self.assertRejects("1 missing key(s)", ta.read_model, d)
        self.assertEqual(len(ta.read_model(d, check=False).tensors), 67)


class PolicyTests(Temp):
    def test_round_trip_and_rejections(self):
        ops = [{"op": "flip"}, {"op": "normalize", "mean": 0.5, "std": [0.2, 0.3, 0.4]},
               {"op": "segment-crop", "frames": 100}]
        p = ta.write_policy(self.tmp / "policy.json", ops, seed=-3, stage=2**64 - 1)
        self.assertEqual(ta.read_policy(self.tmp), {"ops": [{"op": "flip", "p": 0.5},
                                                            {"op": "normalize", "mean": [0.5], "std": [0.2, 0.3, 0.4]},
                                                            {"op": "segment-crop", "frames": 100}],
                                                    "seed": -3, "stage": 2**64 - 1})
        self.assertTrue(p.read_text().startswith('{\n  "ops": [\n    {\n      "op": "flip",\n      "p": 0.5\n'))
        for kw, needle in [({"ops": [{"op": "crop"}]}, "unknown op `crop`"), ({"seed": 1.5}, "`seed` must be"),
                           ({"stage": -1}, "`stage` must be"), ({"ops": [{"op": "noise"}]}, "needs `snr`")]:
            self.assertRejects(needle, ta.write_policy, self.tmp / "x.json", **{"ops": ops, "seed": 1, "stage": 2, **kw})


class MetricsTests(Temp):
    REPORT = {"model": {"eer": 0.25, "top1": 0.5, "auc": float("nan")}, "baseline": {"eer": 0.5},
              "diff": {"eer": -0.25}, "trials": {"count": 10, "positives": 5, "source": "all pairs"},
              "columns": ["model", "baseline", "diff"]}

    def test_round_trip_and_flatten(self):
        p = ta.write_metrics(self.tmp / "metrics.json", self.REPORT)
        text = p.read_text()
        self.assertTrue(text.startswith('{\n  "baseline": {\n    "eer": 0.5\n  },'), text)
        back = ta.read_metrics(p)
        self.assertIsNone(back["model"]["auc"], "NaN is written as null")
        self.assertEqual(ta.read_metrics(self.tmp), back, "a folder holding metrics.json")
        self.assertEqual(ta.flatten_metrics(back), {"baseline.eer": 0.5, "diff.eer": -0.25,
                                                    "model.eer": 0.25, "model.top1": 0.5})
        ta.write_metrics(self.tmp / "flat.json", {"accuracy": 0.9, "nested": {"deeper": {"x": 1}}})
        self.assertEqual(ta.read_metrics(self.tmp / "flat.json")["nested"]["deeper"]["x"], 1)

    def test_rejections(self):
        for report, needle in [([1, 2], "must be a JSON object"), ({"model": {"eer": "low"}}, "`model.eer` must be a number"),
                               ({"columns": ["model"]}, "`columns` names `model`"),
                               ({"trials": {"count": -1}}, "`trials.count`"), ({"ok": True}, "`ok` must be a number")]:
            self.assertRejects(needle, ta.write_metrics, self.tmp / "m.json", report)
        (self.tmp / "bad.json").write_text("[")
        self.assertRejects("bad JSON", ta.read_metrics, self.tmp / "bad.json")

    def test_plots(self):
        plots = ta.write_plots(self.tmp / "plots", {"roc.png": png(720, 540), "det.png": png()})
        self.assertEqual([(p.name, p.width, p.height) for p in plots], [("det.png", 3, 2), ("roc.png", 720, 540)])
        self.assertEqual(ta.list_plots(self.tmp / "plots"), plots)
        self.assertEqual(ta.write_plots(self.tmp / "empty", {}), [])
        self.assertRejects("is not a PNG", ta.write_plots, self.tmp / "p2", {"roc.png": b"GIF89a" + b"\0" * 30})
        self.assertRejects("plain `*.png`", ta.write_plots, self.tmp / "p2", {"roc.svg": png()})
        (self.tmp / "plots" / "notes.txt").write_text("x")
        self.assertRejects("only .png", ta.list_plots, self.tmp / "plots")
        self.assertRejects("not a folder", ta.list_plots, self.tmp / "nothing")


if __name__ == "__main__":
    unittest.main()
