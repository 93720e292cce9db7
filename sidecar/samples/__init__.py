"""The reviewer side: pull, query and compare sampled completions."""
