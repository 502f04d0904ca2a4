"""Generation: the step-synchronous engine and resumable jobs."""
