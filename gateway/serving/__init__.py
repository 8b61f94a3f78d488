"""``serve``'s process machinery: the background process, the intake worker, parse-ahead,
the signals between the processes, and the listeners' group-commit writer."""
