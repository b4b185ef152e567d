"""rnnext: vanilla recurrent neural networks with forward and BPTT in C++/Eigen."""

from . import losses, optim
from . import tasks
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .rnn import RNN, load
from .training import Trainer

__all__ = ["RNN", "load", "losses", "optim", "__version__"]
__all__ += ["tasks", "Trainer", "save_checkpoint", "load_checkpoint"]
__all__ += ["get_num_threads", "set_num_threads"]
