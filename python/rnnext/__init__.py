"""rnnext: vanilla recurrent neural networks with forward and BPTT in C++/Eigen."""

from . import losses, optim
from . import tasks
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .rnn import RNN, from_onnx, load
from .sequences import gather_last, scatter_last
from .training import Trainer

__all__ = ["RNN", "load", "from_onnx", "losses", "optim", "__version__"]
__all__ += ["tasks", "Trainer", "save_checkpoint", "load_checkpoint"]
__all__ += ["get_num_threads", "set_num_threads", "gather_last", "scatter_last"]
