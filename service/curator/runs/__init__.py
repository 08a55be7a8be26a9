"""The service layer between the HTTP routes and the pure curation code: runs, tickets,
selection, feedback and the strategy snapshots the API selects with."""
