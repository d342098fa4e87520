import sys
from pathlib import Path

# Share the oracle and input factories of tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
