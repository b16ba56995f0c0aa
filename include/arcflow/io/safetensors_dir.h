// Tensors of a folder in the Hugging Face layout, read by name without loading whole files.
//
// A component folder (e.g. a diffusers model's `transformer/` or `vae/`) holds either one file
//   <folder>/<stem>.safetensors
// or shards listed by an index
//   <folder>/<stem>.safetensors.index.json   {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}
// (stem "diffusion_pytorch_model" for diffusers, "model" for transformers). Opening reads the index
// and the shards' headers only; tensor data is read later, one tensor at a time, straight from the
// file into its destination. io/ knows no model: checking names and shapes against a model is the
// caller's job (see models/flux/flux_loader.h).
//
// Strict on the layout: an index that is not valid JSON, lacks "weight_map", maps a tensor to a
// non-string or to a path outside the folder, names a shard that does not exist, lists a tensor
// its shard does not hold, or a shard holding a tensor the index does not list for it, each
// throws std::runtime_error whose message starts with the file concerned and names the tensor.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"

namespace arcflow::io {

// Where one tensor lives.
struct StoredTensor {
  std::string file;            // path of the safetensors file holding it
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;         // absolute byte offset of its data in `file`
  uint64_t nbytes = 0;
};

class SafetensorsDir {
 public:
  // The folder's <stem>.safetensors.index.json when it exists (shards), else <stem>.safetensors.
  // Throws std::runtime_error naming the folder and both file names when neither exists.
  static SafetensorsDir open(const std::string& folder, const std::string& stem = "diffusion_pytorch_model");
  // A single safetensors file.
  static SafetensorsDir open_file(const std::string& path);

  // The index file (sharded) or the single file: what error messages about the whole set name.
  const std::string& source() const { return source_; }
  bool sharded() const { return sharded_; }
  // Every tensor by name.
  const std::map<std::string, StoredTensor>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws std::runtime_error "<source>: no tensor '<name>'" when absent.
  const StoredTensor& at(const std::string& name) const;
  // The metadata of each file (the index's "metadata" object is not included), by file path.
  const std::map<std::string, Metadata>& metadata() const { return metadata_; }
  // Total bytes of tensor data.
  uint64_t total_bytes() const;

  // A new CPU tensor holding the stored data, in its stored dtype.
  torch::Tensor read(const std::string& name) const;
  // Reads the tensor into `dst`, which must have the stored shape (any dtype, any device): a
  // contiguous CPU destination of the stored dtype is filled straight from the file; otherwise
  // the data goes through one CPU buffer of the stored dtype and is converted by copy_. Throws
  // std::runtime_error naming the file and the tensor on a shape mismatch or a read error.
  void read_into(const std::string& name, torch::Tensor& dst) const;

 private:
  std::string source_;
  bool sharded_ = false;
  std::map<std::string, StoredTensor> tensors_;
  std::map<std::string, Metadata> metadata_;
};

// The safetensors spelling of a dtype ("F32", "BF16", ...), for messages.
std::string safetensors_dtype_name(torch::ScalarType t);

}  // namespace arcflow::io
