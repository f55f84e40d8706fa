"""``python -m qwen3_rag_components.cli``."""

from __future__ import annotations

from .main import main

raise SystemExit(main())
