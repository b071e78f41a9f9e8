"""The command line: ``python -m boneage.serve [--host 127.0.0.1] [--port 8000] [--model M]``.

Its own module because it is the only part that knows about processes and sockets: argparse,
the shared error policy (:func:`boneage.cli.run_command`) and uvicorn, which only a running
server needs. The tests and benchmarks build the same app (:func:`~boneage.serve.app.create_app`)
without any of it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from boneage.cli import command_parser, positive_float, quiet_native_logs, run_command
from boneage.serve.app import create_app
from boneage.serve.upload import DEFAULT_MAX_UPLOAD_MB

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("serve", "Serve the bone-age web page and JSON API on this computer.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0 exposes it to the network)")  # fmt: skip
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--model", help="model file or run directory (default: the shipped model)")
    p.add_argument("--tta", type=int,
                   help="test-time augmentation copies (default: the model file's)")  # fmt: skip
    p.add_argument("--max-upload-mb", type=positive_float, default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest accepted upload, in MB")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    return run_command(lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise OSError(
            "the web app needs FastAPI and uvicorn: pip install 'boneage[serve]'"
        ) from None
    app = create_app(model=args.model, tta=args.tta, max_upload_mb=args.max_upload_mb)
    info = app.state.service.model_info()
    print(
        f"boneage: model {info['name']} ({info['file']}); open http://{args.host}:{args.port}/",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
