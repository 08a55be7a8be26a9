"""Background work: the feedback queue and the updater that applies tickets."""
