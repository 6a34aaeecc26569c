"""Sample models written the way the research code writes them (their own layer classes)."""
