#!/usr/bin/env python3
"""Label clips with a Gemini model through the google-genai SDK (retries, resume). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("label_google_gen_ai_cloud.py")
