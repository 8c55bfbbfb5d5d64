//! Unit tests for the config pipeline: scalars, tokenizer, broken configs, happy paths, examples.
