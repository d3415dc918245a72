//! Unit tests of the watch history, parameters and filters.
