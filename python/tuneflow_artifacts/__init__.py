"""Read and write tuneflow's artifacts in Python, with numpy and
safetensors only (no tuneflow build, no libtorch).

The formats are specified in ``docs/artifacts.md``. Every reader raises
:class:`ArtifactError` (a ``ValueError``) naming the file and field at
fault; every writer checks its input the way tuneflow's readers (and the
stages that consume the artifact) do, and writes the bytes tuneflow writes.

- dataset (``ingest``/``augment``): :func:`read_dataset` -> :class:`Dataset`,
  :func:`write_dataset`, :func:`write_dataset_splits`
- model (``pretrain``/``fine-tune``/``freeze``): :func:`read_model` ->
  :class:`Model`, :func:`write_model`, :func:`architecture`
- embeddings (``extract``): :func:`read_embeddings` -> :class:`Embeddings`,
  :func:`write_embeddings`, :func:`read_export`
- augmentation policy (``augment``): :func:`read_policy`, :func:`write_policy`
- metrics and plots (``evaluate``): :func:`read_metrics`,
  :func:`write_metrics`, :func:`flatten_metrics`, :func:`list_plots`,
  :func:`write_plots`

The PyTorch network and ``extract`` are in
:mod:`tuneflow_artifacts.torch_model` (imports torch).
"""

from ._common import ArtifactError
from .dataset import (Dataset, DatasetInfo, Item, read_dataset, write_dataset,
                      write_dataset_splits)
from .embeddings import Embeddings, read_embeddings, read_export, write_embeddings
from .metrics import (Plot, check_metrics, flatten_metrics, list_plots, read_curves,
                      read_metrics, write_metrics, write_plots)
from .model import Model, architecture, check_config, read_model, resolve, write_model
from .policy import check_policy, read_policy, write_policy
from .trials import parse_trials

__all__ = [
    "ArtifactError", "Dataset", "DatasetInfo", "Item", "read_dataset", "write_dataset",
    "write_dataset_splits", "Embeddings", "read_embeddings", "write_embeddings", "read_export",
    "Plot", "check_metrics", "flatten_metrics", "list_plots", "read_curves", "read_metrics",
    "write_metrics",
    "write_plots", "Model", "architecture", "check_config", "read_model", "resolve",
    "write_model", "check_policy", "read_policy", "write_policy", "parse_trials",
]
