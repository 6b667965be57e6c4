"""GGUF export, quantization and CPU serving of the ragkiln LM through llama.cpp.

    gguf_names  state-dict -> GGUF tensor names (pure)      types     the GGUF types and how each is made
    spm_vocab   SentencePiece model -> GGUF vocabulary       metadata  GGUF key/values, prompt template (pure)
    export      write GGUF files (gguf-py; K-quants by llama.cpp)
    runtime     LlamaCppGenerator: streaming, stop strings, sampling, context pool, bounded queue
    metrics     perplexity / KL / top-1 against the torch model (pure)
    verify      parity and cost of every type against torch
    service     entry points for the CLI, the server and the bench
"""
