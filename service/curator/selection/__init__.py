"""The selection machinery behind `runs/selection.py`: copies of each run's curator for
scoring (snapshots), pools scored and drawn ahead of the select (prescore, prescored,
draws), and the version announcements separate workers send (announcements)."""
