"""`python -m minimagen.train` and `accelerate launch -m minimagen.train`: the same as `minimagen-train`."""
import sys

from .cli import main

sys.exit(main())
