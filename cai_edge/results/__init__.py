"""What goes out: result rows (:mod:`.rows`), the ids they can hold (:mod:`.ids`), output formats
(:mod:`.formats`), the files themselves (:mod:`.files`), and the lock and spool that keep a run's
rows safe until its output is in place (:mod:`.lock`, :mod:`.spool`)."""
