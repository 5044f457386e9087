# Type stubs for clusterkit._core (python/src/register_*.cpp). Keep in step
# with the bindings: tests/python/test_stubs.py compares the two.

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Union, overload

_Path = Union[str, os.PathLike[str]]
_Argv = Sequence[Union[str, bytes, os.PathLike[str]]]
_CancelKind = Literal["terminal", "partial", "total"]

__version__: str

#: Every value Error.code can take.
ERROR_CODES: tuple[str, ...]

class Error(Exception):
    message: str
    code: str
    result: RunResult | None
    def __init__(self, message: str, code: str = "invalid_argument", result: RunResult | None = None) -> None: ...

class HostSpec:
    name: str
    address: str
    local: bool
    user: str
    port: int
    jump_host: str
    server_alive_count: int
    max_sessions: int
    ssh_options: list[str]
    def __init__(
        self,
        name: str = "",
        address: str = "",
        *,
        local: bool = False,
        user: str = "",
        port: int = 0,
        identity_file: _Path | None = None,
        jump_host: str = "",
        known_hosts_file: _Path | None = None,
        ssh_config_file: _Path | None = None,
        host_key_policy: str = "strict",
        connect_timeout: float = 10.0,
        control_persist: float = 600.0,
        server_alive_interval: float = 3.0,
        server_alive_count: int = 3,
        max_sessions: int = 8,
        ssh_options: list[str] = [],
    ) -> None: ...
    @staticmethod
    def local_machine(name: str = "localhost") -> HostSpec: ...
    @property
    def identity_file(self) -> str: ...
    @identity_file.setter
    def identity_file(self, value: _Path | None) -> None: ...
    @property
    def known_hosts_file(self) -> str: ...
    @known_hosts_file.setter
    def known_hosts_file(self, value: _Path | None) -> None: ...
    @property
    def ssh_config_file(self) -> str: ...
    @ssh_config_file.setter
    def ssh_config_file(self, value: _Path | None) -> None: ...
    @property
    def host_key_policy(self) -> Literal["strict", "accept-new"]: ...
    @host_key_policy.setter
    def host_key_policy(self, value: str) -> None: ...
    @property
    def connect_timeout(self) -> float: ...
    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None: ...
    @property
    def control_persist(self) -> float: ...
    @control_persist.setter
    def control_persist(self, value: float) -> None: ...
    @property
    def server_alive_interval(self) -> float: ...
    @server_alive_interval.setter
    def server_alive_interval(self, value: float) -> None: ...
    def display(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]
    def __copy__(self) -> HostSpec: ...
    def __deepcopy__(self, memo: dict[int, Any]) -> HostSpec: ...

class RunResult:
    @property
    def exit_code(self) -> int: ...
    @property
    def signal(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def stdout_bytes(self) -> bytes: ...
    @property
    def stderr_bytes(self) -> bytes: ...
    @property
    def stdout_truncated(self) -> bool: ...
    @property
    def stderr_truncated(self) -> bool: ...
    @property
    def duration(self) -> float: ...
    @property
    def diagnostic(self) -> str: ...
    @property
    def success(self) -> bool: ...

class TransferResult:
    @property
    def bytes(self) -> int: ...
    @property
    def duration(self) -> float: ...
    @property
    def diagnostic(self) -> str: ...

class HostOutcome:
    @property
    def host(self) -> str: ...
    @property
    def error(self) -> Error | None: ...
    @property
    def result(self) -> RunResult: ...
    @property
    def success(self) -> bool: ...

class Operation:
    def cancel(self, kind: _CancelKind = "terminal") -> None: ...
    def done(self) -> bool: ...

class Host:
    @overload
    def __init__(self, spec: HostSpec) -> None: ...
    @overload
    def __init__(
        self,
        *,
        name: str = "",
        address: str = "",
        local: bool = False,
        user: str = "",
        port: int = 0,
        identity_file: _Path | None = None,
        jump_host: str = "",
        known_hosts_file: _Path | None = None,
        ssh_config_file: _Path | None = None,
        host_key_policy: str = "strict",
        connect_timeout: float = 10.0,
        control_persist: float = 600.0,
        server_alive_interval: float = 3.0,
        server_alive_count: int = 3,
        max_sessions: int = 8,
        ssh_options: list[str] = [],
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> HostSpec: ...
    @property
    def control_path(self) -> str: ...
    @property
    def last_diagnostic(self) -> str: ...
    def ssh_argv(self) -> list[str]: ...
    def run(
        self,
        argv: _Argv | None = None,
        *,
        script: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: _Path | None = None,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        kill_grace: float = 2.0,
        max_captured_bytes: int = 67108864,
        on_line: Callable[[str, str], object] | None = None,
    ) -> RunResult: ...
    def start_run(
        self,
        argv: _Argv | None = None,
        *,
        script: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: _Path | None = None,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        kill_grace: float = 2.0,
        max_captured_bytes: int = 67108864,
        on_line: Callable[[str, str], object] | None = None,
        done: Callable[[RunResult | Error], object],
    ) -> Operation: ...
    def connect(self) -> None: ...
    def start_connect(self, *, done: Callable[[None | Error], object]) -> Operation: ...
    def upload(
        self,
        local: _Path,
        remote: _Path,
        *,
        mode: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> TransferResult: ...
    def download(
        self,
        remote: _Path,
        local: _Path,
        *,
        mode: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> TransferResult: ...
    def start_upload(
        self,
        local: _Path,
        remote: _Path,
        *,
        mode: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[int, int], object] | None = None,
        done: Callable[[TransferResult | Error], object],
    ) -> Operation: ...
    def start_download(
        self,
        remote: _Path,
        local: _Path,
        *,
        mode: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[int, int], object] | None = None,
        done: Callable[[TransferResult | Error], object],
    ) -> Operation: ...
    def disconnect(self) -> None: ...
    def connection_alive(self) -> bool: ...

def run_on_hosts(
    hosts: Sequence[Host],
    argv: _Argv | None = None,
    *,
    script: str | None = None,
    concurrency: int = 64,
    fail_fast: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: _Path | None = None,
    stdin: str | bytes | None = None,
    timeout: float | None = None,
    kill_grace: float = 2.0,
    max_captured_bytes: int = 67108864,
    on_line: Callable[[str, str, str], object] | None = None,
) -> list[HostOutcome]: ...
def start_run_on_hosts(
    hosts: Sequence[Host],
    argv: _Argv | None = None,
    *,
    script: str | None = None,
    concurrency: int = 64,
    fail_fast: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: _Path | None = None,
    stdin: str | bytes | None = None,
    timeout: float | None = None,
    kill_grace: float = 2.0,
    max_captured_bytes: int = 67108864,
    on_line: Callable[[str, str, str], object] | None = None,
    done: Callable[[list[HostOutcome]], object],
) -> Operation: ...

class InventoryHost:
    @property
    def spec(self) -> HostSpec: ...
    @property
    def name(self) -> str: ...
    @property
    def groups(self) -> list[str]: ...
    @property
    def roles(self) -> list[str]: ...
    @property
    def extra(self) -> dict[str, Any]: ...

class Inventory:
    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, other: Inventory) -> None: ...
    @staticmethod
    def load(path: _Path) -> Inventory: ...
    @staticmethod
    def parse(text: str, source: str = "<inventory>") -> Inventory: ...
    @property
    def hosts(self) -> list[InventoryHost]: ...
    @property
    def source(self) -> str: ...
    def find(self, name: str) -> InventoryHost | None: ...
    def groups(self) -> list[str]: ...
    def select(self, selector: str) -> list[InventoryHost]: ...
    def to_json(self) -> dict[str, Any]: ...
    def __len__(self) -> int: ...
    def __contains__(self, name: str) -> bool: ...
    def __iter__(self) -> Iterator[InventoryHost]: ...

class LabHostStatus:
    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, other: LabHostStatus) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def netns(self) -> str: ...
    @property
    def sshd_pid(self) -> int: ...
    @property
    def running(self) -> bool: ...

class LabStatus:
    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, other: LabStatus) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def exists(self) -> bool: ...
    @property
    def state_dir(self) -> str: ...
    @property
    def inventory_path(self) -> str: ...
    @property
    def identity_file(self) -> str: ...
    @property
    def known_hosts_file(self) -> str: ...
    @property
    def bridge(self) -> str: ...
    @property
    def hosts(self) -> list[LabHostStatus]: ...

def lab_up(hosts: int = 2, nas: bool = False, name: str = "ck", subnet: str = "10.88.0", state_dir: _Path = "") -> LabStatus: ...
def lab_status(name: str = "ck", state_dir: _Path = "") -> LabStatus: ...
def lab_down(name: str = "ck", state_dir: _Path = "") -> None: ...
