"""A user's PyTorch step: load tuneflow's pretrained model with the helper,
fine-tune its embedding layer with a linear head on the target's training
split (the convolutions stay frozen), and write the test split's embeddings
as a tuneflow `embeddings` artifact for `evaluate`.

    probe.py MODEL TRAIN TEST OUT
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from tuneflow_artifacts import read_dataset, write_embeddings  # noqa: E402
from tuneflow_artifacts.preprocess import image_input  # noqa: E402
from tuneflow_artifacts.torch_model import extract, load_model  # noqa: E402

EPOCHS = 30
LR = 0.01


def batches(data, eval_ops):
    """The whole split as network inputs (as `extract` builds them)."""
    x = np.stack([image_input(it.data, eval_ops) for it in data])
    y = np.array([it.label for it in data])
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    model_dir, train_dir, test_dir, out = sys.argv[1:5]
    torch.manual_seed(0)
    model = load_model(model_dir)
    train, test = read_dataset(train_dir), read_dataset(test_dir)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("backbone.embedding")
    emb = model.config["model"]["embedding"]
    head = torch.nn.Linear(emb, len(train.info.classes))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    x, y = batches(train, model.config.get("eval-ops", []))
    model.train()
    for _ in range(EPOCHS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(model(x)), y)
        loss.backward()
        opt.step()
    print(f"probe: final training loss {loss.item():.4f}")
    write_embeddings(out, extract(model, test))


if __name__ == "__main__":
    main()
