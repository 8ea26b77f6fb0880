"""``lus-serve``: the shipped models behind a Triton Inference Server, for several capture boxes.

Three commands::

    lus-serve [serve] [--models DIR|MANIFEST ...]     # PyTriton on this machine (CPU, ONNX Runtime inside)
    lus-serve repo --models models/ --out REPO       # a standard Triton model repository (GPU hosts)
    lus-serve setup-env [DIR]                        # the server's Python environment (see below)

``serve`` binds the frame model and the segmentation members (default: the installed models, the same
lookup as ``lus-stream``) into PyTriton (``nvidia-pytriton``, which bundles ``tritonserver`` with its
Python backend); each model runs in ONNX Runtime in this process with ``--threads`` intra-op threads
(default: the machine's physical cores). Triton's dynamic batcher merges requests of several clients
(``--max-batch``, ``--preferred-batch``, ``--queue-delay-us``, default 2000 µs). Clients are
``load_engine(manifest, backend="triton", triton_url="HOST:PORT")`` (``engines.triton_backend``).

Safety. Frames are patient data: every port listens on loopback (127.0.0.1) by default. ``--host``
off loopback needs TLS for gRPC (``--tls-cert``/``--tls-key``; HTTP and metrics then stay on loopback)
or the explicit ``--insecure`` (everything plaintext on that address, announced loudly). Triton's
model-control, statistics, shared-memory, trace and logging endpoints need an access token
(PyTriton's default); ``--access-token-file`` writes it (mode 0600) for an operator.

Housekeeping. What the server writes (PyTriton's workspace with its copy of tritonserver and its
sockets, the tritonserver log) goes into one run folder under ``--workspace`` (default: the system
temp folder), removed on stop; SIGTERM and SIGINT stop cleanly (Triton removes its own temporary
``/tmp/folder*`` model folders and PyTriton its ``/dev/shm`` regions on a clean stop).

The server's Python environment. PyTriton 0.7's Python-backend stub is a binary built against
numpy 1.x: under numpy 2 every output reaches the client empty (measured here). And the stub links
``libpython3.X.so`` through the loader's default path, which can be another patch release than the
running interpreter's (then models fail to load with ``'_thread.RLock' object has no attribute
'_recursion_count'``); the server puts ``sysconfig.get_config_var("LIBDIR")`` first on
``LD_LIBRARY_PATH`` for tritonserver and the stub. ``lus-serve setup-env`` makes a venv with
``numpy<2``, ONNX Runtime and PyTriton (default ``<this venv>/serve``); run from an environment with
numpy 2, ``lus-serve`` re-executes itself with that environment's Python (or ``--serve-python``,
``$LUS_SERVE_PYTHON``), and refuses with the fix when there is none.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import EngineError
from engines.model_folders import models_root
from engines.triton_repo import (
    BatchingPolicy,
    ServedModel,
    find_manifests,
    served_models,
    write_repository,
)

log = logging.getLogger("lus-serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_GRPC_PORT = 8001
DEFAULT_HTTP_PORT = 8000
DEFAULT_METRICS_PORT = 8002
DEFAULT_QUEUE_DELAY_US = 2000
DEFAULT_MAX_BATCH = 8
DEFAULT_PREFERRED = (2, 4, 8)
SERVE_ENV_DIR = "serve"  # <venv>/serve
ENV_SERVE_PYTHON = "LUS_SERVE_PYTHON"
ENV_TOKEN = "LUS_SERVE_ACCESS_TOKEN"
ENV_REEXEC = "LUS_SERVE_REEXEC"
#: what the server's environment needs (numpy<2: PyTriton 0.7's stub is built against numpy 1.x)
SERVE_REQUIREMENTS = (
    "numpy>=1.26,<2",
    "onnxruntime>=1.18",
    "psutil>=5.9",
    "pyzmq>=25",
    "nvidia-pytriton>=0.7,<0.8",
    "tritonclient[grpc]>=2.50",
)
READY_WORD = "ready"
#: AF_UNIX socket paths are at most 107 bytes; PyTriton puts WORKSPACE/<model>_0_0-server.sock there
UNIX_SOCKET_MAX = 107
SOCKET_SUFFIX = "_0_0-server.sock"


class ServeError(EngineError):
    """The server cannot start as asked; the message says why and the fix."""


# ------------------------------------------------------------------------------------- environment
def libpython_dir() -> str | None:
    """The folder of this interpreter's ``libpython3.X.so`` (``sysconfig`` LIBDIR)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    return str(libdir) if libdir else None


def with_libpython_first(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``env`` with this interpreter's LIBDIR first on LD_LIBRARY_PATH (the stub then links the right
    libpython, not the system's other patch release)."""
    libdir = libpython_dir()
    if not libdir:
        return env
    rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    env["LD_LIBRARY_PATH"] = ":".join([libdir, *rest])
    return env


def server_env_problem() -> str | None:
    """Why this interpreter cannot host PyTriton's Python backend, or None when it can."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a runtime dependency
        return "numpy is not installed"
    if int(np.__version__.split(".")[0]) >= 2:
        return (
            f"numpy {np.__version__} is installed here, and PyTriton 0.7's Python-backend stub is built "
            "against numpy 1.x (every output would reach the clients empty)"
        )
    try:
        import pytriton  # noqa: F401
    except ImportError:
        return "nvidia-pytriton is not installed here"
    return None


def source_root() -> Path | None:
    """The checkout this package runs from (the folder with pyproject.toml), None for an install."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "engines").is_dir() else None


def default_serve_env() -> Path:
    """``<this venv>/serve`` (inside the venv, so ``make clean`` removes it too)."""
    return Path(sys.prefix) / SERVE_ENV_DIR


def find_serve_python(explicit: str | None = None) -> Path | None:
    """The server environment's Python: ``--serve-python``, ``$LUS_SERVE_PYTHON``, ``<venv>/serve``."""
    for cand in (explicit, os.environ.get(ENV_SERVE_PYTHON), default_serve_env() / "bin" / "python"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return Path(cand)
    return None


def reexec_env() -> dict[str, str]:
    """The environment for re-executing under the server's Python: this checkout on PYTHONPATH."""
    env = dict(os.environ)
    env[ENV_REEXEC] = "1"
    root = source_root()
    if root is not None:
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]
        env["PYTHONPATH"] = os.pathsep.join([str(root), *parts])
    return env


def setup_env(
    target: Path, *, python: str | None = None, find_links: Sequence[str] = (), extra: Sequence[str] = ()
) -> Path:
    """Create the server's venv at ``target`` with :data:`SERVE_REQUIREMENTS`; returns its Python.

    This checkout is made importable with a ``.pth`` file; for an installed lus-stream, install its
    wheel into the new venv with ``pip install --no-deps``.
    """
    base = python or sys.executable
    if (target / "bin" / "python").exists():
        print(f"lus-serve: {target} exists; installing into it", flush=True)
    else:
        subprocess.run([base, "-m", "venv", str(target)], check=True)
    py = target / "bin" / "python"
    links = [arg for d in find_links for arg in ("--find-links", d)]
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *links, *SERVE_REQUIREMENTS, *extra], check=True
    )
    root = source_root()
    if root is not None:
        purelib = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        (Path(purelib) / "lus_stream_source.pth").write_text(f"{root}\n", encoding="utf-8")
    else:
        print(
            f"lus-serve: install lus-stream into {target} too: {py} -m pip install --no-deps "
            "lus_stream-*.whl", flush=True,
        )
    check = subprocess.run(
        [str(py), "-c", "import numpy, pytriton, onnxruntime; assert int(numpy.__version__[0]) < 2"],
        capture_output=True, text=True,
    )
    if check.returncode != 0:
        raise ServeError(
            f"{target}: the new environment does not import its packages: {check.stderr.strip()}"
        )
    return py


# ------------------------------------------------------------------------------------------ exposure
def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (or a name that resolves only to loopback addresses)?"""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def exposure(host: str, tls: bool, insecure: bool) -> tuple[str, str, str | None]:
    """(gRPC address, HTTP/metrics address, warning) for ``--host``; ServeError if not allowed.

    Loopback: everything there. Off loopback with TLS: gRPC (TLS) there, HTTP and metrics on loopback
    (Triton's HTTP has no TLS). Off loopback without TLS: only with ``insecure``, everything there.
    """
    if is_loopback(host):
        return host, host, None
    if tls:
        return host, DEFAULT_HOST, None
    if not insecure:
        raise ServeError(
            f"--host {host} is not loopback and no TLS is configured: ultrasound frames are patient data "
            "and would cross the network in plaintext; configure --tls-cert/--tls-key, or accept it "
            "explicitly with --insecure (a trusted, isolated network only)"
        )
    warning = (
        "!" * 100 + f"\nlus-serve: INSECURE: serving patient data in PLAINTEXT on {host} (gRPC, HTTP and "
        "metrics), as --insecure asked; anyone on that network can read frames and results\n" + "!" * 100
    )
    return host, host, warning


# ---------------------------------------------------------------------------------------------- serve
@dataclass
class ServeOptions:
    """Everything ``lus-serve serve`` takes."""

    models: list[Path] = field(default_factory=list)
    host: str = DEFAULT_HOST
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    threads: int | None = None
    policy: BatchingPolicy = field(
        default_factory=lambda: BatchingPolicy(DEFAULT_MAX_BATCH, DEFAULT_PREFERRED, DEFAULT_QUEUE_DELAY_US)
    )
    workspace: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_root_cert: Path | None = None
    insecure: bool = False
    access_token_file: Path | None = None
    verbose: bool = False
    warmup: bool = True


def _np_dtype(name: str) -> Any:
    import numpy as np

    return np.dtype(name).type


class LusServer:
    """PyTriton serving ONNX Runtime engines; :meth:`start`, then :meth:`wait`, then :meth:`stop`."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.models: list[ServedModel] = []
        self.engines: list[Any] = []
        self.triton: Any = None
        self.run_dir: Path | None = None
        self._made_workspace: Path | None = None
        self.grpc_address, self.http_address, self.warning = exposure(
            opts.host, opts.tls_cert is not None, opts.insecure
        )
        if (opts.tls_cert is None) != (opts.tls_key is None):
            raise ServeError("TLS needs both --tls-cert and --tls-key")

    # ------------------------------------------------------------------------------------ start
    def start(self) -> None:
        problem = server_env_problem()
        if problem:
            raise ServeError(f"{problem}; {sys.executable} cannot host PyTriton: run `lus-serve setup-env`")
        from engines.ort_backend import OrtEngine, default_threads

        manifests = find_manifests(self.opts.models or [self._default_models()])
        self.models = served_models(manifests)
        threads = self.opts.threads or default_threads()
        for model in self.models:
            engine = OrtEngine(model.manifest, model.manifest_path, threads=threads)
            if self.opts.warmup:
                engine.warmup(batch=1, iterations=1)
            self.engines.append(engine)
        self.threads = threads
        try:
            self._make_run_dir()
            self._start_triton()
        except BaseException:
            self._print_log_tail()
            self.stop()
            raise

    def _default_models(self) -> Path:
        root = models_root()
        if root is None:
            raise ServeError("no installed models found; pass --models DIR (a folder with frame/ and seg/)")
        return root

    def _make_run_dir(self) -> None:
        base = self.opts.workspace or Path(tempfile.gettempdir())
        if not base.exists():
            base.mkdir(parents=True)
            self._made_workspace = base
        run_dir = Path(tempfile.mkdtemp(prefix="lus-", dir=base))
        self.run_dir = run_dir
        longest = max(len(m.name) for m in self.models) + len(SOCKET_SUFFIX) + 1
        if len(str(self.pytriton_dir)) + longest > UNIX_SOCKET_MAX:
            raise ServeError(
                f"--workspace {base} is too long a path: PyTriton's Unix sockets "
                f"({self.pytriton_dir}/<model>{SOCKET_SUFFIX}) would exceed {UNIX_SOCKET_MAX} bytes "
                "and the models would not load; pass a shorter folder (e.g. under /tmp)"
            )

    @property
    def pytriton_dir(self) -> Path:
        """PyTriton's workspace (it creates the folder): its tritonserver copy and sockets."""
        assert self.run_dir is not None
        return self.run_dir / "pt"

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / "tritonserver.log" if self.run_dir is not None else None

    def _start_triton(self) -> None:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        assert self.run_dir is not None
        # tritonserver and the Python-backend stubs inherit this process's environment
        with_libpython_first(os.environ)
        tls = self.opts.tls_cert is not None
        config = TritonConfig(
            grpc_address=self.grpc_address,
            grpc_port=self.opts.grpc_port,
            http_address=self.http_address,
            http_port=self.opts.http_port,
            metrics_address=self.http_address,
            metrics_port=self.opts.metrics_port,
            allow_gpu_metrics=False,
            exit_timeout_secs=5,
            log_verbose=1 if self.opts.verbose else 0,
            log_file=None if self.opts.verbose else self.log_path,
            grpc_use_ssl=True if tls else None,
            grpc_server_cert=self.opts.tls_cert,
            grpc_server_key=self.opts.tls_key,
            grpc_root_cert=self.opts.tls_root_cert,
            grpc_use_ssl_mutual=True if (tls and self.opts.tls_root_cert) else None,
        )
        security = TritonSecurityConfig(access_token=os.environ.get(ENV_TOKEN) or None)
        self.triton = Triton(config=config, workspace=self.pytriton_dir, security_config=security)
        pol = self.opts.policy
        for model, engine in zip(self.models, self.engines, strict=True):
            self.triton.bind(
                model_name=model.name,
                infer_func=_infer_function(engine, batch),
                inputs=[
                    Tensor(name=t.name, dtype=_np_dtype(t.dtype), shape=tuple(int(d) for d in t.shape[1:]))
                    for t in engine.inputs
                ],
                outputs=[
                    Tensor(name=t.name, dtype=_np_dtype(t.dtype), shape=tuple(int(d) for d in t.shape[1:]))
                    for t in engine.outputs
                ],
                config=ModelConfig(
                    max_batch_size=pol.max_batch_size,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=pol.max_queue_delay_us,
                        preferred_batch_size=list(pol.preferred()) or None,
                    ),
                ),
                strict=True,
            )
        self.triton.run()
        if self.opts.access_token_file is not None:
            path = self.opts.access_token_file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # also when the file was there before
            with os.fdopen(fd, "w") as fh:
                fh.write(str(self.triton.get_access_token()) + "\n")

    def _print_log_tail(self, lines: int = 30) -> None:
        path = self.log_path
        if path is not None and path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            text = "\n".join(tail)
            print(f"lus-serve: tritonserver log (last lines):\n{text}", file=sys.stderr, flush=True)

    # ----------------------------------------------------------------------------------- running
    def describe(self) -> str:
        pol = self.opts.policy
        names = ", ".join(m.name for m in self.models)
        scheme = "grpcs" if self.opts.tls_cert is not None else "grpc"
        return (
            f"{len(self.models)} models ({names}) on {scheme}://{self.grpc_address}:{self.opts.grpc_port} "
            f"(HTTP {self.http_address}:{self.opts.http_port}, metrics "
            f"http://{self.http_address}:{self.opts.metrics_port}/metrics); dynamic batching up to "
            f"{pol.max_batch_size}, preferred {list(pol.preferred())}, queue delay "
            f"{pol.max_queue_delay_us} µs; "
            f"ONNX Runtime CPU, {self.threads} thread(s) per model; workspace {self.run_dir}"
        )

    def alive(self) -> bool:
        return self.triton is not None and bool(self.triton.is_alive())

    def wait(self, stop: threading.Event, poll_s: float = 0.5) -> int:
        """Serve until ``stop`` is set (0) or the server dies (1)."""
        while not stop.wait(poll_s):
            if not self.alive():
                print("lus-serve: tritonserver is gone; stopping", file=sys.stderr, flush=True)
                self._print_log_tail()
                return 1
        return 0

    # -------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop tritonserver, close the engines and remove the run folder (idempotent)."""
        if self.triton is not None:
            t0 = time.monotonic()
            started = _descendants()  # before they are orphaned: stubs' helpers outlive their parents briefly
            with contextlib.suppress(Exception):
                self.triton.stop()
            self.triton = None
            t1 = time.monotonic()
            _reap(started + _descendants())
            log.info("tritonserver stopped in %.1f s, its processes ended %.1f s later",
                     t1 - t0, time.monotonic() - t1)
        for engine in self.engines:
            engine.close()
        self.engines = []
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self._made_workspace is not None:
            with contextlib.suppress(OSError):
                self._made_workspace.rmdir()  # only if empty
            self._made_workspace = None


def _descendants() -> list[Any]:
    """This process's descendants (psutil.Process), except multiprocessing's resource tracker, which
    ends when this process exits (and cleans up after it)."""
    import psutil

    out = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "multiprocessing.resource_tracker" not in " ".join(proc.cmdline()):
                out.append(proc)
    return out


def _reap(procs: list[Any], timeout_s: float = 10.0) -> None:
    """Wait for ``procs`` (tritonserver, its stubs and their helpers) to end; terminate, then kill, any
    that outlive ``timeout_s``. A zombie counts as ended (its new parent reaps it)."""
    import psutil

    def running(procs: list[Any]) -> list[Any]:
        out = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
        return out

    alive = running(list({p.pid: p for p in procs}.values()))
    for signal_them, wait_s in ((None, timeout_s), ("terminate", 3.0), ("kill", 3.0)):
        if signal_them is not None:
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    getattr(proc, signal_them)()
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = running(alive)
        if not alive:
            return


def _infer_function(engine: Any, batch: Callable[..., Any]) -> Callable[..., Any]:
    """The PyTriton callable of one engine: Triton's merged batch in, the engine's outputs out."""
    names = [t.name for t in engine.inputs]

    @batch
    def infer(**inputs: Any) -> dict[str, Any]:
        return engine.infer({n: inputs[n] for n in names})

    return infer


# ----------------------------------------------------------------------------------------------- CLI
def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 2,4,8") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be >= 1")
    return sizes


def _add_batching(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"Triton max_batch_size per model (default {DEFAULT_MAX_BATCH}; "
                   "a plan's at most its profile max)")
    p.add_argument("--preferred-batch", type=_batch_sizes, default=DEFAULT_PREFERRED, metavar="A,B,..",
                   help="dynamic batcher's preferred batch sizes (default 2,4,8; "
                   "those above --max-batch are dropped)")
    p.add_argument("--queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US, metavar="US",
                   help="how long a request may wait for others to batch with (default 2000 µs)")


def _policy(args: argparse.Namespace) -> BatchingPolicy:
    return BatchingPolicy(args.max_batch, tuple(args.preferred_batch), args.queue_delay_us)


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-serve",
        description="Serve the lus-stream models through Triton (PyTriton, ONNX Runtime on the CPU). "
        "Other commands: `lus-serve repo --help` (a Triton model repository for GPU hosts), "
        "`lus-serve setup-env --help` (the server's Python environment).",
    )
    p.add_argument("--models", nargs="+", type=Path, metavar="PATH",
                   help="model folders (frame/ + seg/) or manifests (default: the installed models)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1; off loopback needs TLS or --insecure)")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT)
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT)
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per model (default: physical cores)")
    _add_batching(p)
    p.add_argument("--workspace", type=Path, default=None,
                   help="folder for the server's run folder (removed on stop; default: the temp folder)")
    p.add_argument("--tls-cert", type=Path, help="PEM server certificate: gRPC over TLS")
    p.add_argument("--tls-key", type=Path, help="PEM server key")
    p.add_argument("--tls-root-cert", type=Path, help="PEM root certificate: require client certificates")
    p.add_argument("--insecure", action="store_true",
                   help="allow plaintext off loopback (patient data on the network: isolated networks only)")
    p.add_argument("--access-token-file", type=Path,
                   help=f"write the token of Triton's restricted endpoints here (0600); ${ENV_TOKEN} sets it")
    p.add_argument("--serve-python", help=f"the server environment's Python (default ${ENV_SERVE_PYTHON}, "
                   "then <venv>/serve/bin/python)")
    p.add_argument("--no-warmup", action="store_true", help="skip one warm-up call per model at start")
    p.add_argument("--verbose", action="store_true", help="tritonserver's log on stdout (default: quiet)")
    return p


def repo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-serve repo",
        description="Write a standard Triton model repository from the model manifests "
        "(ONNX -> onnxruntime_onnx, TensorRT plans from tools/build_engine.py -> tensorrt_plan).",
    )
    p.add_argument("--models", nargs="+", type=Path, metavar="PATH",
                   help="model folders (frame/ + seg/) or manifests (default: the installed models)")
    p.add_argument("--out", type=Path, required=True, help="repository folder to write")
    _add_batching(p)
    p.add_argument("--instances", type=int, default=1, help="instance_group count per model (default 1)")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance kind (default gpu)")
    p.add_argument("--plans", action="store_true", help="serve the TensorRT plan beside each ONNX file")
    p.add_argument("--plan-gpu", help="with --plans: the GPU name the plans were built for")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="with --plans: this precision only")
    p.add_argument("--require-plans", action="store_true", help="with --plans: fail when a model has none")
    p.add_argument("--force", action="store_true", help="replace existing model folders in --out")
    return p


def setup_env_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-serve setup-env",
        description="Create the server's Python environment (numpy<2, ONNX Runtime, PyTriton): "
        "PyTriton 0.7's "
        "Python-backend stub is built against numpy 1.x.",
    )
    p.add_argument("target", nargs="?", type=Path, default=None,
                   help=f"venv folder (default {default_serve_env()})")
    p.add_argument("--python", help="interpreter to create it with (default: this one)")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR", help="extra wheel folder")
    p.add_argument("--extra", action="append", default=[], metavar="REQ",
                   help="extra requirement, e.g. onnxruntime-gpu")
    return p


def run_repo(argv: Sequence[str]) -> int:
    args = repo_parser().parse_args(argv)
    try:
        paths = args.models
        if not paths:
            root = models_root()
            if root is None:
                raise ServeError("no installed models found; pass --models DIR")
            paths = [root]
        models = served_models(
            find_manifests(paths), plans=args.plans, plan_gpu=args.plan_gpu, precision=args.precision,
            require_plans=args.require_plans,
        )
        written = write_repository(
            models, args.out, _policy(args), instances=args.instances, kind=args.kind, force=args.force
        )
    except (EngineError, ValueError) as exc:
        print(f"lus-serve repo: {exc}", file=sys.stderr)
        return 2
    for model in models:
        for note in model.notes:
            print(f"lus-serve repo: {note}")
    for w in written:
        print(f"lus-serve repo: {w.config_path.parent}: {w.platform}, max_batch_size {w.max_batch_size}")
    print(
        f"lus-serve repo: {len(written)} models in {args.out}; serve on a GPU host with\n"
        f"  docker run --rm --gpus all -p 127.0.0.1:8001:8001 -p 127.0.0.1:8002:8002 "
        f"-v {Path(args.out).resolve()}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 "
        "tritonserver --model-repository=/models"
    )
    return 0


def run_setup_env(argv: Sequence[str]) -> int:
    args = setup_env_parser().parse_args(argv)
    target = args.target or default_serve_env()
    try:
        py = setup_env(target, python=args.python, find_links=args.find_links, extra=args.extra)
    except (subprocess.CalledProcessError, ServeError) as exc:
        print(f"lus-serve setup-env: {exc}", file=sys.stderr)
        return 1
    print(f"lus-serve setup-env: {py} can serve; `lus-serve` uses it (or pass --serve-python {py})")
    return 0


def run_serve(argv: Sequence[str]) -> int:
    args = serve_parser().parse_args(argv)
    try:  # refuse an unsafe address before anything else (and before re-executing)
        exposure(args.host, args.tls_cert is not None, args.insecure)
    except ServeError as exc:
        print(f"lus-serve: {exc}", file=sys.stderr)
        return 2
    problem = server_env_problem()
    if problem:
        py = find_serve_python(args.serve_python)
        if py is not None and os.environ.get(ENV_REEXEC) != "1":
            print(f"lus-serve: {problem}; running the server under {py}", file=sys.stderr, flush=True)
            os.execve(str(py), [str(py), "-m", "engines.triton_server", *argv], reexec_env())
        print(
            f"lus-serve: {problem}; {sys.executable} cannot host the server. Create its environment with "
            "`lus-serve setup-env` (a venv with numpy<2, ONNX Runtime and PyTriton), or pass --serve-python",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="lus-serve: %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("pytriton").setLevel(logging.ERROR)
    opts = ServeOptions(
        models=list(args.models or []), host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        metrics_port=args.metrics_port, threads=args.threads, policy=_policy(args), workspace=args.workspace,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_root_cert=args.tls_root_cert,
        insecure=args.insecure,
        access_token_file=args.access_token_file, verbose=args.verbose, warmup=not args.no_warmup,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"lus-serve: {signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        server = LusServer(opts)
    except ServeError as exc:
        print(f"lus-serve: {exc}", file=sys.stderr)
        return 2
    if server.warning:
        print(server.warning, file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        server.start()
    except (EngineError, ValueError) as exc:
        print(f"lus-serve: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"lus-serve: tritonserver did not start ({type(exc).__name__}: {exc}); are the ports "
              f"{opts.grpc_port}/{opts.http_port}/{opts.metrics_port} free?", file=sys.stderr)
        return 1
    try:
        print(f"lus-serve: {READY_WORD} in {time.monotonic() - t0:.1f} s: {server.describe()}", flush=True)
        if server.warning:
            print("lus-serve: INSECURE (plaintext off loopback)", file=sys.stderr, flush=True)
        code = server.wait(stop)
    finally:
        server.stop()
    print("lus-serve: stopped", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "repo":
        return run_repo(argv[1:])
    if argv and argv[0] == "setup-env":
        return run_setup_env(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return run_serve(argv)


if __name__ == "__main__":
    sys.exit(main())
