"""Type stubs for the compiled engine (cpp/bindings.cpp). Private: use rnnext.RNN."""

from typing import Any, List, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def gemm_isa() -> str: ...
def _set_backward_chunk_rows(rows: int) -> None: ...
def softmax_xent(logits: NDArray[Any], targets: NDArray[Any]) -> Optional[Tuple[float, NDArray[Any]]]: ...

class ModelF32:
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int,
        vocab_size: int,
        bidirectional: bool,
        learn_h0: bool,
        dropout: float,
        nonlinearity: str,
        output_activation: str,
    ) -> None: ...
    @property
    def layout(self) -> List[Tuple[str, int, Tuple[int, ...]]]: ...
    @property
    def params(self) -> NDArray[np.float32]: ...
    @property
    def grads(self) -> NDArray[np.float32]: ...
    @property
    def has_forward(self) -> bool: ...
    @property
    def workspace_bytes(self) -> int: ...
    @property
    def scratch_bytes(self) -> int: ...
    def step(self, x: ArrayLike, h: Optional[ArrayLike]) -> Tuple[NDArray[np.float32], NDArray[np.float32]]: ...
    def seed(self, s: int) -> None: ...
    def zero_grad(self) -> None: ...
    def forward(
        self,
        x: Optional[ArrayLike],
        ids: Optional[ArrayLike],
        h0: Optional[ArrayLike],
        lengths: Optional[ArrayLike],
        T: int,
        B: int,
        training: bool,
        keep_x: bool = ...,
        x_private: bool = ...,
    ) -> Tuple[NDArray[np.float32], NDArray[np.float32]]: ...
    def backward(
        self, grad: ArrayLike, dh_n: Optional[ArrayLike], wrt_logits: bool, want_dx: bool
    ) -> Tuple[Optional[NDArray[np.float32]], NDArray[np.float32], NDArray[np.float32]]: ...

class ModelF64:
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int,
        vocab_size: int,
        bidirectional: bool,
        learn_h0: bool,
        dropout: float,
        nonlinearity: str,
        output_activation: str,
    ) -> None: ...
    @property
    def layout(self) -> List[Tuple[str, int, Tuple[int, ...]]]: ...
    @property
    def params(self) -> NDArray[np.float64]: ...
    @property
    def grads(self) -> NDArray[np.float64]: ...
    @property
    def has_forward(self) -> bool: ...
    @property
    def workspace_bytes(self) -> int: ...
    @property
    def scratch_bytes(self) -> int: ...
    def step(self, x: ArrayLike, h: Optional[ArrayLike]) -> Tuple[NDArray[np.float64], NDArray[np.float64]]: ...
    def seed(self, s: int) -> None: ...
    def zero_grad(self) -> None: ...
    def forward(
        self,
        x: Optional[ArrayLike],
        ids: Optional[ArrayLike],
        h0: Optional[ArrayLike],
        lengths: Optional[ArrayLike],
        T: int,
        B: int,
        training: bool,
        keep_x: bool = ...,
        x_private: bool = ...,
    ) -> Tuple[NDArray[np.float64], NDArray[np.float64]]: ...
    def backward(
        self, grad: ArrayLike, dh_n: Optional[ArrayLike], wrt_logits: bool, want_dx: bool
    ) -> Tuple[Optional[NDArray[np.float64]], NDArray[np.float64], NDArray[np.float64]]: ...
