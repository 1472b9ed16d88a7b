"""The PyTorch network of tuneflow_artifacts.torch_model on synthetic
models and data: names and shapes as tuneflow's, save/load round trips,
extract's semantics, frozen BatchNorm. Skipped without torch.

Run: python -m unittest discover -s python/tests
(The comparison with tuneflow's own `extract` is in test_tuneflow_outputs.py.)
"""

import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tuneflow_artifacts as ta  # noqa: E402
from tuneflow_artifacts.model import architecture, check_config  # noqa: E402

try:
    import torch
    from tuneflow_artifacts.torch_model import TuneflowModel, extract, load_model, save_model
    from torch_helpers import CONFIGS, randomised
except ImportError:  # pragma: no cover
    torch = None

@unittest.skipIf(torch is None, "torch is not installed")
class TorchModelTests(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def test_names_and_shapes_are_tuneflows(self):
        for name, c in CONFIGS.items():
            with self.subTest(name):
                m = TuneflowModel(c)
                got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
                self.assertEqual(got, architecture(check_config(c)))
                x = torch.zeros((2, *c["data-shape"])) if c["data-kind"] == "image" else torch.zeros(2, 50, c["data-shape"][0])
                self.assertEqual(tuple(m.eval()(x).shape), (2, 8))

    def test_save_and_load_round_trip(self):
        for name, c in CONFIGS.items():
            with self.subTest(name):
                m = randomised(c)
                m.metrics = {"epochs": [], "best_epoch": None, "stopped_early": False}
                folder = save_model(m, self.tmp / name)
                back = load_model(folder)
                for k, v in m.state_dict().items():
                    self.assertTrue(torch.equal(v, back.state_dict()[k]), k)
                x = torch.randn(3, *c["data-shape"]) if c["data-kind"] == "image" else torch.randn(3, 37, c["data-shape"][0])
                self.assertTrue(torch.equal(m(x), back(x)))
                self.assertEqual(ta.read_model(folder).metrics, m.metrics)

    def test_a_module_with_a_wrong_tensor_is_refused(self):
        m = randomised(CONFIGS["r10-grey-softmax"])
        m.head = torch.nn.Linear(8, 5)
        with self.assertRaises(ta.ArtifactError) as cm:
            save_model(m, self.tmp / "bad")
        self.assertIn("`head.bias` has shape [5]", str(cm.exception))

    def test_image_extract_normalises_flips_and_scores(self):
        c = CONFIGS["r10-grey-softmax"]
        m = randomised(c)
        rng = np.random.default_rng(0)
        items = [(f"i{i}", i % 3, rng.integers(0, 256, (1, 12, 12), dtype=np.uint8)) for i in range(5)]
        ds = ta.read_dataset(ta.write_dataset(self.tmp / "d", items, kind="image", classes=["a", "b", "c"],
                                              splits={"test": [1, 3, 4]}, split="test", trials=[(1, 1, 4)]))
        e = extract(m, ds, flip=True, batch=2)
        x = torch.from_numpy(np.stack([((a.astype(np.float64) / 255 - 0.13) / 0.31).astype(np.float32)
                                       for _, _, a in (items[1], items[3], items[4])]))
        with torch.no_grad():
            raw = (m(x) + m(x.flip(3))) / 2
            want = raw / raw.norm(dim=1, keepdim=True)
            np.testing.assert_allclose(e.vectors, want.numpy(), atol=1e-6)
            np.testing.assert_allclose(e.scores, m.logits(raw).numpy(), atol=1e-5)
        self.assertEqual((e.ids, e.labels.tolist(), e.indices.tolist()), (["i1", "i3", "i4"], [1, 0, 1], [1, 3, 4]))
        self.assertEqual((e.classes, e.head_classes, e.normalized), (["a", "b", "c"], ["c0", "c1", "c2"], True))
        self.assertEqual(e.trials.tolist(), [[1, 1, 4]])
        ta.write_embeddings(self.tmp / "e", e)  # what extract gives is a valid artifact
        with self.assertRaises(ta.ArtifactError):
            extract(m, ta.read_dataset(ta.write_dataset(self.tmp / "rgb", [("a", 0, np.zeros((3, 12, 12), np.uint8))],
                                                        kind="image", classes=["a"])))

    def test_spectrogram_extract_averages_segments_and_repeats_short_items(self):
        c = CONFIGS["r10-fbank24-stride2"]
        m = randomised(c)
        rng = np.random.default_rng(1)
        items = [("long", 0, rng.standard_normal((65, 24)).astype(np.float32)),
                 ("short", 1, rng.standard_normal((7, 24)).astype(np.float32))]
        ds = ta.read_dataset(ta.write_dataset(self.tmp / "f", items, kind="fbank", classes=["a", "b"]))
        e = extract(m, ds, segment=20, normalize=False)
        with torch.no_grad():
            long = m(torch.from_numpy(items[0][2][:60].reshape(3, 20, 24))).mean(0)
            short = m(torch.from_numpy(np.tile(items[1][2], (3, 1))[:20][None]))[0]
            whole = m(torch.from_numpy(items[0][2][None]))[0]
        np.testing.assert_allclose(e.vectors, torch.stack([long, short]).numpy(), atol=1e-6)
        np.testing.assert_allclose(extract(m, ds, normalize=False).vectors[0], whole.numpy(), atol=1e-6)
        self.assertFalse(e.normalized)

    def test_frozen_batchnorm_keeps_its_statistics_while_training(self):
        m = randomised(CONFIGS["r10-grey-softmax"])
        before = {k: v.clone() for k, v in m.state_dict().items()}
        m.apply_freeze([k for k in before if k.startswith("backbone.stem.")])
        m.train()
        m(torch.randn(4, 1, 12, 12))
        after = m.state_dict()
        self.assertTrue(torch.equal(after["backbone.stem.bn.running_mean"], before["backbone.stem.bn.running_mean"]))
        self.assertFalse(torch.equal(after["backbone.layer1.0.bn1.running_mean"], before["backbone.layer1.0.bn1.running_mean"]))
        self.assertFalse(m.backbone.stem.conv.weight.requires_grad)


if __name__ == "__main__":
    unittest.main()
