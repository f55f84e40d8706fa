"""``python -m qwen3_rag_components.demo``."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
