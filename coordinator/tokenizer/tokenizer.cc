#include "coordinator/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "coordinator/tokenizer/json_depth.h"
#include "coordinator/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/model_file.h"

namespace glm::tokenizer {

namespace {

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = (std::filesystem::path(path) / "tokenizer.json").string();
  auto text = model::ReadModelFile(file, model::kMaxLargeModelFileBytes);
  if (!text.ok()) return text.status();
  auto tok = FromJsonString(*text);
  if (!tok.ok()) {
    // FromJsonString's messages may start "tokenizer.json: "; the path replaces it.
    absl::string_view message = tok.status().message();
    absl::ConsumePrefix(&message, "tokenizer.json: ");
    return absl::Status(tok.status().code(), absl::StrCat(file, ": ", message));
  }
  return tok;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonString(std::string_view json_text) {
  auto parsed = model::ParseModelJson<nlohmann::json>(std::string(json_text), "tokenizer.json");
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json config = *std::move(parsed);
  if (!config.is_object()) return absl::InvalidArgumentError("tokenizer.json: expected an object");
  // Before anything copies a part of it (copies and the component builders recurse per level):
  // Hugging Face's files nest a few levels; a Sequence nested 100k deep overflowed the stack.
  constexpr int kMaxDepth = 64;
  if (JsonDepth(config, kMaxDepth) > kMaxDepth)
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json nests deeper than ", kMaxDepth, " levels"));
  if (!config.contains("model")) return absl::InvalidArgumentError("tokenizer.json: no 'model'");
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  auto normalizer = Normalizer::FromJson(config.value("normalizer", nlohmann::json()));
  if (!normalizer.ok()) return normalizer.status();
  tok->normalizer_ = *std::move(normalizer);
  if (tok->normalizer_ != nullptr && tok->normalizer_->IsIdentity()) tok->normalizer_.reset();
  auto pre = PreTokenizer::FromJson(config.value("pre_tokenizer", nlohmann::json()));
  if (!pre.ok()) return pre.status();
  tok->pre_tokenizer_ = *std::move(pre);
  auto model = BpeModel::FromJson(config["model"]);
  if (!model.ok()) return model.status();
  tok->model_ = *std::move(model);
  auto post = PostProcessor::FromJson(config.value("post_processor", nlohmann::json()));
  if (!post.ok()) return post.status();
  tok->post_processor_ = *std::move(post);
  auto decoder = Decoder::FromJson(config.value("decoder", nlohmann::json()));
  if (!decoder.ok()) return decoder.status();
  tok->decoder_ = *std::move(decoder);
  auto added = AddedVocabulary::FromJson(config.value("added_tokens", nlohmann::json()),
                                         tok->normalizer_.get());
  if (!added.ok()) return added.status();
  tok->added_ = *std::move(added);

  tok->vocab_size_ = tok->model_->size();
  for (const AddedToken& t : tok->added_.tokens()) {
    tok->vocab_size_ = std::max(tok->vocab_size_, t.id + 1);
  }
  // special_ and token_bytes_ are dense over ids: see BpeModel::IdTableFits.
  const size_t entries = tok->model_->num_entries() + tok->added_.tokens().size();
  if (!BpeModel::IdTableFits(int64_t{tok->vocab_size_} - 1, entries)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "added_tokens: largest id ", tok->vocab_size_ - 1, " is far beyond the ", entries,
        " vocabulary entries (ids must stay below 2 x entries + ", BpeModel::kIdSlack, ")"));
  }
  tok->special_.assign(tok->vocab_size_, false);
  for (const AddedToken& t : tok->added_.tokens()) {
    if (t.special) tok->special_[t.id] = true;
  }
  if (tok->post_processor_ != nullptr) {
    // The ids a post-processor adds (BOS/EOS...) come straight from the file: an unknown one
    // would be sent to the model as is.
    std::vector<int32_t> affixes;
    tok->post_processor_->Process(&affixes);
    for (int32_t id : affixes) {
      if (auto s = tok->CheckId(id); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("post_processor: ", s.message()));
      }
    }
  }
  if (tok->decoder_ != nullptr && tok->decoder_->IsByteLevel()) {
    tok->token_bytes_.resize(tok->vocab_size_);
    for (int32_t id = 0; id < tok->vocab_size_; ++id) {
      auto token = tok->IdToToken(id);
      if (!token) continue;
      std::vector<std::string> one{*token};
      tok->decoder_->DecodeChain(&one);
      tok->token_bytes_[id] = one.empty() ? std::string() : std::move(one[0]);
    }
  }
  return tok;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (auto s = ValidateUtf8(text); !s.ok()) return s;
  std::vector<int32_t> ids;
  if (!text.empty()) {
    std::vector<Piece> pieces;
    pieces.push_back(Piece{std::string(text), -1});
    added_.SplitRaw(&pieces);
    if (normalizer_ != nullptr) {
      for (Piece& p : pieces) {
        if (p.id < 0)
          if (absl::Status n = normalizer_->Normalize(&p.text); !n.ok()) return n;
      }
    }
    added_.SplitNormalized(&pieces);
    if (pre_tokenizer_ != nullptr)
      if (absl::Status s = pre_tokenizer_->Apply(&pieces); !s.ok()) return s;
    ids.reserve(text.size() / 3 + 8);
    for (const Piece& p : pieces) {
      if (p.id >= 0) {
        ids.push_back(p.id);
      } else {
        model_->Tokenize(p.text, &ids);
      }
    }
  }
  if (add_special_tokens && post_processor_ != nullptr) post_processor_->Process(&ids);
  return ids;
}

absl::Status Tokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size_ ||
      (added_.FindById(id) == nullptr && model_->IdToToken(id) == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown token id ", id, " (vocabulary size ", vocab_size_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Tokenizer::DecodeBytes(const std::vector<int32_t>& ids,
                                                   bool skip_special_tokens) const {
  for (int32_t id : ids) {
    if (auto s = CheckId(id); !s.ok()) return s;
  }
  if (!token_bytes_.empty()) {
    std::string out;
    for (int32_t id : ids) {
      if (skip_special_tokens && special_[id]) continue;
      out += token_bytes_[id];
    }
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && special_[id]) continue;
    tokens.push_back(*IdToToken(id));
  }
  std::string out;
  if (decoder_ != nullptr) {
    decoder_->DecodeChain(&tokens);
    for (const auto& t : tokens) out += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special_tokens) const {
  auto bytes = DecodeBytes(ids, skip_special_tokens);
  if (!bytes.ok()) return bytes.status();
  return LossyUtf8(*bytes);
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const AddedToken* t = added_.FindByContent(token)) return t->id;
  return model_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* t = added_.FindById(id)) return t->content;
  if (const std::string* s = model_->IdToToken(id)) return *s;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size_ && special_[id];
}

}  // namespace glm::tokenizer
