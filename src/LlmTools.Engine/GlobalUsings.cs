// The engine's public types (model cache, completion, chat sessions, batches) live in its own namespace.
global using LlmTools.Engine;
