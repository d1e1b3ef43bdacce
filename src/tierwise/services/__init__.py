"""Use cases: load -> call the domain -> persist -> commit, one transaction each."""
