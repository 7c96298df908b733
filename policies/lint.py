"""``python -m policies.lint [DIR]``: validate the catalog; exit 1 listing every problem."""

from __future__ import annotations

import sys
from pathlib import Path

from policies.loader import CATALOG_DIR, CatalogError, load_catalog


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else CATALOG_DIR
    try:
        catalog = load_catalog(directory)
    except CatalogError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"目录校验失败：{len(exc.problems)} 处问题", file=sys.stderr)
        return 1
    print(f"目录校验通过：{len(catalog)} 条政策（{catalog.version}）")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
