"""feedstock.trainer: a small Caffe-semantics trainer (numpy or cupy) that feedstock loaders feed.

``train(model, train_source, val_source, solver_cfg, out_dir, ...) -> TrainReport``
is the entry point the CLI and the demo share; models are ``lenet``, ``otto_mlp``
or any list of Caffe-style layer specs.
"""
from ..backend import Backend, get_backend  # noqa: F401
from .datasets import Split, load_fashion_mnist, read_idx, write_idx  # noqa: F401
from .feeding import Subset, as_source, holdout_split, labelled_arrays  # noqa: F401
from .loop import TrainReport, evaluate, train  # noqa: F401
from .models import ModelDef, get_model, lenet, otto_mlp  # noqa: F401
from .nn.net import Net  # noqa: F401
from .nn.solver import SGDSolver, SolverConfig, learning_rate  # noqa: F401
from .predict import write_class_probabilities  # noqa: F401
