"""The engine: llama.cpp behind one thread, continuous batching, coupled sampling."""
