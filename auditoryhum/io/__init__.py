"""Everything that touches files: audio, line-aligned artefacts, atomic writes."""
