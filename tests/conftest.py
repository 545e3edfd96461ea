"""Test setup: the repository's top level is importable (the project is a flat set of scripts)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
