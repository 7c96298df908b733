"""Execute the notebooks end to end: ``python -m notebooks.run [--inplace] [NAME …]``."""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, *, inplace: bool = False, timeout: int = 900) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE.parent)}})
    client.execute()
    if inplace:
        nbformat.write(nb, path)
    return nb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--inplace", action="store_true")
    args = parser.parse_args()
    paths = [HERE / n for n in args.names] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        execute(path, inplace=args.inplace)
        print(f"executed {path.name}")


if __name__ == "__main__":
    main()
