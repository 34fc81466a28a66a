#!/usr/bin/env bash
# The writer-pattern matrix, second half: the application's last close while
# sluice is stopped, writes while it is stopped, sluice restarted under a
# writer, the database file deleted and recreated, kill -9 under short
# connections (see writer_matrix.sh).
exec bash "$SRCDIR/tests/e2e/writer_matrix.sh" stops
