"""Reading drop files and storing them: file handles, threads and COPY, apart from the pure
analytics in `core`."""
