"""[model] plugins: Python files imported (once per process) before a network is built, so that the variants
they register (model.register_attention, model.register_stream) can be named in the INI file.

    import_plugins([Path("my_variants.py")], where="[model] plugins")
"""
from __future__ import annotations

import importlib.util
import re
import sys
import traceback
from pathlib import Path

from sst.errors import ConfigError, printable

_PLUGINS: dict[Path, object] = {}       # imported plugin files (one import per process)


def import_plugins(paths, where: str = "[model] plugins") -> None:
    """Import Python files ([model] plugins) so that the variants they register can be built by name.

    Each file is imported once per process, as a module named after its path. A file that is missing or
    fails on import is one ConfigError naming `where`, the file and, for an error inside it, the line; so is
    one that calls sys.exit or raises KeyboardInterrupt (either would otherwise end the command silently).
    """
    for path in map(Path, paths):
        if path in _PLUGINS:
            continue
        if not path.is_file():
            raise ConfigError(f"{where}: {path}: no such file")
        name = "sst_plugin_" + re.sub(r"\W", "_", str(path))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module      # as for any import: dataclasses and pickling inside it find it
        try:
            spec.loader.exec_module(module)
        except (SystemExit, KeyboardInterrupt) as e:    # would end run.py as if it had done its work, or as Ctrl-C
            del sys.modules[name]
            what = f"called sys.exit({printable(repr(e.code), 40)})" if isinstance(e, SystemExit) else \
                "raised KeyboardInterrupt (or Ctrl-C came while it was imported)"
            raise ConfigError(f"{where}: {path}: the plugin {what} on import; a plugin registers variants and "
                              f"returns, nothing was run") from None
        except Exception as e:
            del sys.modules[name]
            line = getattr(e, "lineno", None) if isinstance(e, SyntaxError) else next(
                (tb.lineno for tb in traceback.extract_tb(e.__traceback__) if Path(tb.filename) == path), None)
            at = f", line {line}" if line else ""
            raise ConfigError(f"{where}: {path}{at}: the plugin failed on import ({type(e).__name__}: "
                                    f"{(str(e).splitlines() or [''])[0][:200]})") from None
        _PLUGINS[path] = module
