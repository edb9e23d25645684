"""French and English for people: message catalogues, the locale a person reads, and
dates, times and amounts formatted for it."""
