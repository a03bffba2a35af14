// CTC prefix beam search with a KenLM scorer and a vocabulary lexicon, with the semantics of Mozilla
// DeepSpeech 0.9's decoder (so that the same probabilities and scorer give the same transcripts):
//  - prefixes live in a trie; each keeps the log-probabilities of its paths ending in a blank and in
//    its last label, for the previous and the current frame; the beam keeps the best `beam_size`;
//  - with a scorer the lexicon (every vocabulary word spelled in labels, followed by the space label
//    in word mode) constrains which labels may extend a prefix; the LM scores a word when a space
//    follows it (word mode) or a character when its last byte/label arrives (bytes/character modes):
//    alpha * (ln P(token | up to n-1 previous tokens) + hot-word boosts) + beta; unknown: -1000;
//  - a candidate whose score cannot reach the worst prefix of a full beam is skipped (Mozilla's
//    min_cutoff); frames at the start where the blank has p >= 0.999 are skipped;
//  - at the end, a prefix whose last word has no space after it gets that word's LM score + beta;
//    no end-of-sentence probability is scored.
// Exposed with a C ABI for ctypes (ds_ctcdecoder/native.py).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lm/model.hh"
#include "lm/virtual_interface.hh"

namespace {

const float kInf = std::numeric_limits<float>::max();  // "minus infinity" is -kInf, as Mozilla's
const float kTiny = std::numeric_limits<float>::min();
const float kAlive = -kInf / 2;  // a path score above this is a real one
const float kLog10E = 0.4342944819f;
const double kUnknownWord = -1000.0;
enum Mode { kWords = 0, kBytes = 1, kCharacters = 2 };

template <typename T>
T LogAdd(T x, T y) {
  const T lowest = -std::numeric_limits<T>::max();
  if (x <= lowest) return y;
  if (y <= lowest) return x;
  T top = std::max(x, y);
  return std::log(std::exp(x - top) + std::exp(y - top)) + top;
}

// The vocabulary as a trie of label sequences: state 0 is the start; a final state ends a word.
struct Lexicon {
  std::vector<std::vector<std::pair<int, int>>> arcs;  // per state: (label, next state), sorted
  std::vector<char> final;

  Lexicon() : arcs(1), final(1, 0) {}
  void Add(const int* labels, int n) {
    int state = 0;
    for (int i = 0; i < n; ++i) {
      auto& out = arcs[state];
      auto it = std::lower_bound(out.begin(), out.end(), std::make_pair(labels[i], -1));
      if (it == out.end() || it->first != labels[i]) {
        it = out.insert(it, std::make_pair(labels[i], static_cast<int>(arcs.size())));
        arcs.emplace_back();
        final.push_back(0);
      }
      state = it->second;
    }
    final[state] = 1;
  }
  int Next(int state, int label) const {
    const auto& out = arcs[state];
    auto it = std::lower_bound(out.begin(), out.end(), std::make_pair(label, -1));
    return (it != out.end() && it->first == label) ? it->second : -1;
  }
};

struct Scorer {
  std::unique_ptr<lm::base::Model> lm;
  Lexicon lexicon;
  Mode mode = kWords;
  std::vector<std::string> labels;  // the text of every label (a byte in bytes mode)
  size_t order = 0;

  double CondProb(const std::vector<std::string>& ngram, bool bos,
                  const std::unordered_map<std::string, float>* hot, float* boost) const {
    const auto& vocab = lm->BaseVocabulary();
    lm::ngram::State states[2];
    lm::ngram::State *in = &states[0], *out = &states[1];
    if (bos) lm->BeginSentenceWrite(in); else lm->NullContextWrite(in);
    double cond = 0.0;
    if (hot) {
      for (const auto& word : ngram) {
        auto it = hot->find(word);
        if (it != hot->end()) *boost += it->second;
      }
    }
    for (const auto& word : ngram) {
      lm::WordIndex index = vocab.Index(word);
      if (index == 0) return kUnknownWord;
      cond = lm->BaseScore(in, index, out);
      std::swap(in, out);
    }
    return cond / kLog10E;
  }
};

struct TimeNode {
  int parent;  // index in the arena, -1 for the root
  int frame;
};

struct Prefix {
  int label = -1;  // -1 at the root (as an unsigned label it sorts after every other)
  Prefix* parent = nullptr;
  std::vector<std::pair<int, Prefix*>> children;  // in creation order
  bool exists = true;
  float b_prev = -kInf, nb_prev = -kInf, b_cur = -kInf, nb_cur = -kInf, score = -kInf;
  int lexicon_state = -1;  // -1: no lexicon
  int depth = 0;            // labels from the root
  int times = -1;           // last node of this prefix's label times
  int pending_times = -2;   // -2: none; else the parent's times to extend by pending_frame
  int pending_frame = 0;

  ~Prefix() {
    for (auto& child : children) delete child.second;
  }

  void Remove() {  // dropped from the beam: forget it unless longer prefixes still need it
    exists = false;
    if (!children.empty()) return;
    Prefix* up = parent;
    for (auto it = up->children.begin(); it != up->children.end(); ++it) {
      if (it->first == label) {
        up->children.erase(it);
        break;
      }
    }
    if (up->children.empty() && !up->exists) up->Remove();
    delete this;
  }

  void Collect(std::vector<Prefix*>& out, std::vector<TimeNode>& times_arena) {
    for (auto& child : children) child.second->Collect(out, times_arena);
    if (!exists) return;
    b_prev = b_cur;
    nb_prev = nb_cur;
    b_cur = nb_cur = -kInf;
    score = LogAdd(b_prev, nb_prev);
    if (pending_times != -2) {
      times_arena.push_back({pending_times, pending_frame});
      times = static_cast<int>(times_arena.size()) - 1;
    }
    pending_times = -2;
    out.push_back(this);
  }

  unsigned Key() const { return static_cast<unsigned>(label); }
};

bool Better(const Prefix* x, const Prefix* y) {
  if (x->score == y->score) return x->Key() != y->Key() && x->Key() < y->Key();
  return x->score > y->score;
}

struct Result {
  double confidence;
  std::vector<int> tokens, frames;
};

class Search {
 public:
  Search(int alphabet_size, int space, size_t beam, double cutoff_prob, size_t cutoff_top_n,
         const Scorer* scorer, double alpha, double beta, std::unordered_map<std::string, float> hot)
      : blank_(alphabet_size), space_(space), beam_(beam), cutoff_prob_(cutoff_prob),
        cutoff_top_n_(cutoff_top_n), scorer_(scorer), alpha_(alpha), beta_(beta), hot_(std::move(hot)) {
    root_.reset(new Prefix);
    root_->b_prev = 0.0f;
    root_->score = 0.0f;
    if (scorer_) root_->lexicon_state = 0;
    prefixes_.push_back(root_.get());
    top_ = root_.get();
    settled_ = root_.get();
  }

  void Next(const double* probs, int frames, int classes);
  std::vector<Result> Decode(size_t num_results) const;
  void SetThreshold(float threshold) { threshold_ = threshold > 0 ? threshold : kInf; }
  void SetSettleAfter(int labels) { settle_after_ = std::max(0, labels); }
  size_t Settled() const { return settled_tokens_.size(); }  // labels final in every live prefix

 private:
  Prefix* Extend(Prefix* prefix, int label);
  bool Boundary(const Prefix* prefix, int label) const;
  std::vector<std::string> NGram(const Prefix* prefix) const;
  float WordScore(const Prefix* prefix, bool with_hot_words) const;
  void DropFarBehind();
  void Settle();
  std::vector<std::pair<int, float>> Pruned(const double* prob, int classes) const;

  int blank_, space_;
  size_t beam_;
  double cutoff_prob_;
  size_t cutoff_top_n_;
  const Scorer* scorer_;
  double alpha_, beta_;
  std::unordered_map<std::string, float> hot_;
  std::unique_ptr<Prefix> root_;
  Prefix* top_;  // the deepest common ancestor of the live prefixes found so far
  std::vector<Prefix*> prefixes_;
  std::vector<TimeNode> times_;
  int frame_ = 0;
  bool started_ = false;
  float threshold_ = kInf;  // none: Mozilla's search
  int settle_after_ = 0;    // 0: never
  const Prefix* settled_ = nullptr;  // every live prefix descends from it (the root until Settle)
  std::vector<int> settled_tokens_;  // the labels from the root to settled_
};

std::vector<std::pair<int, float>> Search::Pruned(const double* prob, int classes) const {
  std::vector<std::pair<int, double>> ranked;
  for (int i = 0; i < classes; ++i) ranked.emplace_back(i, prob[i]);
  size_t keep = classes;
  if (cutoff_prob_ < 1.0 || cutoff_top_n_ < keep) {
    std::sort(ranked.begin(), ranked.end(),
              [](const std::pair<int, double>& a, const std::pair<int, double>& b) { return a.second > b.second; });
    if (cutoff_prob_ < 1.0) {
      double mass = 0.0;
      keep = 0;
      for (const auto& entry : ranked) {
        mass += entry.second;
        ++keep;
        if (mass >= cutoff_prob_ || keep >= cutoff_top_n_) break;
      }
    }  // as Mozilla's: without cutoff_prob, cutoff_top_n only orders the labels
    ranked.resize(keep);
  }
  std::vector<std::pair<int, float>> out;
  for (size_t i = 0; i < keep; ++i) out.emplace_back(ranked[i].first, static_cast<float>(std::log(ranked[i].second + kTiny)));
  return out;
}

Prefix* Search::Extend(Prefix* prefix, int label) {
  for (auto& child : prefix->children) {
    if (child.first != label) continue;
    Prefix* found = child.second;
    if (!found->exists) {
      found->exists = true;
      found->b_prev = found->nb_prev = found->b_cur = found->nb_cur = -kInf;
    }
    return found;
  }
  int state = -1;
  if (prefix->lexicon_state >= 0) {
    const Lexicon& lexicon = scorer_->lexicon;
    int next = lexicon.Next(prefix->lexicon_state, label);
    if (next < 0) {  // no word goes on with this label
      if (lexicon.final[prefix->lexicon_state]) prefix->lexicon_state = 0;
      return nullptr;
    }
    state = lexicon.final[next] ? 0 : next;  // a complete word starts the next one
  }
  Prefix* child = new Prefix;
  child->label = label;
  child->parent = prefix;
  child->depth = prefix->depth + 1;
  child->lexicon_state = state;
  prefix->children.emplace_back(label, child);
  return child;
}

bool Search::Boundary(const Prefix* prefix, int label) const {
  if (scorer_->mode == kWords) return label == space_;
  if (prefix->label == -1) return false;
  if (scorer_->mode == kCharacters) return true;
  int distance = 1;  // bytes: does `prefix` complete a UTF-8 character?
  const Prefix* node = prefix;
  while ((((node->label + 1) & 0xC0) == 0x80) && node->parent && node->parent->label != -1) {
    node = node->parent;
    ++distance;
  }
  unsigned char first = static_cast<unsigned char>(node->label + 1);
  int needed = (first >> 3) == 0x1E ? 4 : (first >> 4) == 0x0E ? 3 : (first >> 5) == 0x06 ? 2
             : (first >> 7) == 0 ? 1 : -1;
  return distance == needed;
}

std::vector<std::string> Search::NGram(const Prefix* prefix) const {
  std::vector<std::string> ngram;
  const Prefix* node = prefix;
  for (size_t n = 0; n < scorer_->order && node && node->label != -1; ++n) {
    std::vector<int> labels;
    const Prefix* stop = node;
    if (scorer_->mode == kWords) {
      while (stop->label != space_ && stop->label != -1) {
        labels.push_back(stop->label);
        stop = stop->parent;
      }
    } else if (scorer_->mode == kCharacters) {
      labels.push_back(stop->label);
    } else {  // bytes: back to the first byte of the character
      while (stop->label != -1) {
        labels.push_back(stop->label);
        if (((stop->label + 1) & 0xC0) != 0x80) break;
        stop = stop->parent;
      }
    }
    std::string word;
    for (auto it = labels.rbegin(); it != labels.rend(); ++it) word += scorer_->labels[*it];
    ngram.push_back(word);
    node = stop->parent;
  }
  std::reverse(ngram.begin(), ngram.end());
  return ngram;
}

float Search::WordScore(const Prefix* prefix, bool with_hot_words) const {
  std::vector<std::string> ngram = NGram(prefix);
  bool bos = ngram.size() < scorer_->order;
  float boost = 0.0f;
  double cond = scorer_->CondProb(ngram, bos, with_hot_words && !hot_.empty() ? &hot_ : nullptr, &boost);
  float score = static_cast<float>((cond + boost) * alpha_);
  return score;
}

void Search::Next(const double* probs, int frames, int classes) {
  for (int t = 0; t < frames; ++t, ++frame_) {
    const double* prob = probs + static_cast<size_t>(t) * classes;
    if (prob[blank_] < 0.999) started_ = true;
    if (!started_) continue;
    float min_cutoff = -kInf;
    bool full_beam = false;
    if (scorer_) {
      size_t n = std::min(prefixes_.size(), beam_);
      std::partial_sort(prefixes_.begin(), prefixes_.begin() + n, prefixes_.end(), Better);
      min_cutoff = prefixes_[n - 1]->score + std::log(prob[blank_]) - std::max(0.0, beta_);
      full_beam = n == beam_;
    }
    std::vector<std::pair<int, float>> labels = Pruned(prob, classes);
    bool alive = false, blank_tried = false;
    for (size_t k = 0; k < labels.size() || (!alive && !blank_tried); ++k) {
      // Beyond the pruned labels: when none of them continued any prefix (a label the lexicon
      // cannot spell took all the mass), the blank carries the beam through this frame, as it
      // would have without pruning, instead of the whole search ending at -infinity.
      const int c = k < labels.size() ? labels[k].first : blank_;
      const float log_c = k < labels.size() ? labels[k].second : static_cast<float>(std::log(prob[blank_] + kTiny));
      blank_tried = blank_tried || c == blank_;
      for (size_t i = 0; i < prefixes_.size() && i < beam_; ++i) {
        Prefix* prefix = prefixes_[i];
        if (full_beam && log_c + prefix->score < min_cutoff) break;
        if (prefix->score == -kInf) continue;
        if (c == blank_) {
          float log_p = log_c + prefix->score;
          if (prefix->nb_cur < log_p) prefix->pending_times = -2;
          prefix->b_cur = LogAdd(prefix->b_cur, log_p);
          alive = alive || log_p > kAlive;
          continue;
        }
        if (c == prefix->label) {  // the same label again without a blank: the same prefix
          float log_p = log_c + prefix->nb_prev;
          if (prefix->nb_cur < log_p) prefix->pending_times = -2;
          prefix->nb_cur = LogAdd(prefix->nb_cur, log_p);
          alive = alive || log_p > kAlive;
        }
        Prefix* longer = Extend(prefix, c);
        if (!longer) continue;
        float log_p = -kInf;
        if (c == prefix->label && prefix->b_prev > -kInf) log_p = log_c + prefix->b_prev;
        else if (c != prefix->label) log_p = log_c + prefix->score;
        if (scorer_) {
          const Prefix* scored = scorer_->mode == kWords ? prefix : longer;
          if (Boundary(scored, c)) {
            log_p += WordScore(scored, true);
            log_p += beta_;
          }
        }
        if (longer->nb_cur < log_p) {
          longer->pending_times = prefix->times;
          longer->pending_frame = frame_;
        }
        longer->nb_cur = LogAdd(longer->nb_cur, log_p);
        alive = alive || log_p > kAlive;
      }
    }
    prefixes_.clear();
    // Settled history: above the deepest node that every live prefix descends from, nothing can
    // change any more; walking the trie from there keeps a frame's cost independent of the length
    // of the stream so far (from the root it grew with the transcript).
    while (!top_->exists && top_->children.size() == 1) top_ = top_->children.front().second;
    top_->Collect(prefixes_, times_);
    if (prefixes_.size() > beam_) {
      std::nth_element(prefixes_.begin(), prefixes_.begin() + beam_, prefixes_.end(), Better);
      for (size_t i = beam_; i < prefixes_.size(); ++i) prefixes_[i]->Remove();
      prefixes_.resize(beam_);
    }
    if (threshold_ < kInf) DropFarBehind();
    if (settle_after_ > 0) Settle();
  }
}

// Long streams: branches that parted long ago can stay within a few nats of each other and would be
// extended side by side for ever. Once the best prefix is 2 x settle_after labels past the settled
// point, everything up to settle_after labels before its end is settled: prefixes that do not go
// through that point leave the beam (flashlight's prune with a look-back, counted in labels).
void Search::Settle() {
  Prefix* best = prefixes_.front();
  for (Prefix* prefix : prefixes_) if (Better(prefix, best)) best = prefix;
  if (best->depth - top_->depth <= 2 * settle_after_) return;
  Prefix* anchor = best;
  for (int i = 0; i < settle_after_; ++i) anchor = anchor->parent;
  size_t kept = 0;
  for (Prefix* prefix : prefixes_) {
    const Prefix* node = prefix;
    while (node->depth > anchor->depth) node = node->parent;
    if (node == anchor) prefixes_[kept++] = prefix;
    else prefix->Remove();
  }
  prefixes_.resize(kept);
  std::vector<int> more;  // the labels newly settled, kept so that Decode need not walk them again
  for (const Prefix* node = anchor; node != settled_; node = node->parent) more.push_back(node->label);
  settled_tokens_.insert(settled_tokens_.end(), more.rbegin(), more.rend());
  settled_ = anchor;
  top_ = anchor;
}

void Search::DropFarBehind() {  // flashlight's beam threshold: prefixes this far below the best go
  float best = -kInf;
  for (const Prefix* prefix : prefixes_) best = std::max(best, prefix->score);
  if (best <= kAlive) return;
  const float floor = best - threshold_;
  size_t kept = 0;
  for (Prefix* prefix : prefixes_) {
    if (prefix->score >= floor) prefixes_[kept++] = prefix;
    else prefix->Remove();
  }
  prefixes_.resize(kept);
}

std::vector<Result> Search::Decode(size_t num_results) const {
  std::vector<Prefix*> ranked = prefixes_;
  std::unordered_map<const Prefix*, float> scores;
  for (Prefix* prefix : ranked) scores[prefix] = prefix->score;
  if (scorer_) {  // the last word, when no space followed it
    for (size_t i = 0; i < beam_ && i < ranked.size(); ++i) {
      Prefix* prefix = ranked[i];
      const Prefix* before = scorer_->mode == kWords ? prefix->parent : prefix;
      if (before && !Boundary(before, prefix->label)) {
        float score = static_cast<float>(WordScore(prefix, false) + beta_);
        scores[prefix] += score;
      }
    }
  }
  size_t n = std::min(ranked.size(), num_results);
  std::partial_sort(ranked.begin(), ranked.begin() + n, ranked.end(), [&scores](const Prefix* x, const Prefix* y) {
    float sx = scores.at(x), sy = scores.at(y);
    if (sx == sy) return x->Key() != y->Key() && x->Key() < y->Key();
    return sx > sy;
  });
  std::vector<Result> results;
  for (size_t i = 0; i < n; ++i) {
    Result result;
    result.confidence = scores.at(ranked[i]);
    for (const Prefix* node = ranked[i]; node != settled_; node = node->parent) result.tokens.push_back(node->label);
    result.tokens.insert(result.tokens.end(), settled_tokens_.rbegin(), settled_tokens_.rend());
    std::reverse(result.tokens.begin(), result.tokens.end());
    for (int node = ranked[i]->times; node >= 0; node = times_[node].parent) result.frames.push_back(times_[node].frame);
    std::reverse(result.frames.begin(), result.frames.end());
    results.push_back(std::move(result));
  }
  return results;
}

void CopyError(const std::string& message, char* error, int size) {
  if (error && size > 0) {
    std::strncpy(error, message.c_str(), size - 1);
    error[size - 1] = '\0';
  }
}

}  // namespace

extern "C" {

// mode: 0 words, 1 UTF-8 bytes, 2 characters. labels: the text of each label (bytes mode: ignored).
// spellings: every vocabulary entry's labels, concatenated; lengths: one count per entry.
void* ds2_scorer_new(const char* lm_path, int mode, int space, int alphabet_size, const char* const* labels,
                     const int* spellings, const int* lengths, int entries, char* error, int error_size) {
  try {
    std::unique_ptr<Scorer> scorer(new Scorer);
    lm::ngram::ModelType type;
    if (!lm::ngram::RecognizeBinary(lm_path, type)) {
      CopyError("not a KenLM binary language model", error, error_size);
      return nullptr;
    }
    lm::ngram::Config config;
    config.load_method = util::LAZY;
    scorer->lm.reset(lm::ngram::LoadVirtual(lm_path, config));
    scorer->order = scorer->lm->Order();
    scorer->mode = static_cast<Mode>(mode);
    for (int i = 0; i < alphabet_size; ++i) {
      scorer->labels.push_back(mode == kBytes ? std::string(1, static_cast<char>(i + 1)) : std::string(labels[i]));
    }
    std::vector<int> word;
    for (int e = 0, at = 0; e < entries; at += lengths[e], ++e) {
      word.assign(spellings + at, spellings + at + lengths[e]);
      if (mode == kWords) word.push_back(space);
      scorer->lexicon.Add(word.data(), static_cast<int>(word.size()));
    }
    return scorer.release();
  } catch (const std::exception& err) {
    CopyError(err.what(), error, error_size);
    return nullptr;
  }
}

void ds2_scorer_free(void* scorer) { delete static_cast<Scorer*>(scorer); }

int ds2_scorer_order(void* scorer) { return static_cast<int>(static_cast<Scorer*>(scorer)->order); }

void* ds2_search_new(int alphabet_size, int space, int beam, double cutoff_prob, int cutoff_top_n, void* scorer,
                     double alpha, double beta, const char* const* hot_words, const float* boosts, int n_hot) {
  std::unordered_map<std::string, float> hot;
  for (int i = 0; i < n_hot; ++i) hot.emplace(hot_words[i], boosts[i]);
  return new Search(alphabet_size, space, static_cast<size_t>(std::max(1, beam)), cutoff_prob,
                    static_cast<size_t>(std::max(1, cutoff_top_n)), static_cast<Scorer*>(scorer), alpha, beta,
                    std::move(hot));
}

// Drop prefixes more than `threshold` (natural log) below the best after each frame; <= 0: never.
void ds2_search_set_threshold(void* search, double threshold) {
  static_cast<Search*>(search)->SetThreshold(static_cast<float>(threshold));
}

// Settle what lies more than `labels` labels before the best prefix's end (see Settle); 0: never.
void ds2_search_set_settle_after(void* search, int labels) { static_cast<Search*>(search)->SetSettleAfter(labels); }

void ds2_search_next(void* search, const double* probs, int frames, int classes) {
  static_cast<Search*>(search)->Next(probs, frames, classes);
}

void* ds2_search_decode(void* search, int num_results) {
  return new std::vector<Result>(static_cast<Search*>(search)->Decode(static_cast<size_t>(std::max(1, num_results))));
}

// The best transcript's labels (Decode(1)'s) from `offset` on: at most `capacity` of them into `tokens`,
// the number of settled labels (the same at the start of every prefix, see Settle) into `settled`;
// returns the transcript's length. A partial result of a long stream need not copy its settled text.
int ds2_search_best(void* search, int offset, int* tokens, int capacity, int* settled) {
  const Search* s = static_cast<Search*>(search);
  std::vector<Result> results = s->Decode(1);
  *settled = static_cast<int>(s->Settled());
  if (results.empty()) return 0;
  const std::vector<int>& all = results[0].tokens;
  for (int i = std::max(0, offset), j = 0; i < static_cast<int>(all.size()) && j < capacity; ++i, ++j) tokens[j] = all[i];
  return static_cast<int>(all.size());
}

void ds2_search_free(void* search) { delete static_cast<Search*>(search); }

int ds2_results_count(void* results) { return static_cast<int>(static_cast<std::vector<Result>*>(results)->size()); }

double ds2_result_confidence(void* results, int i) { return (*static_cast<std::vector<Result>*>(results))[i].confidence; }

int ds2_result_length(void* results, int i) {
  return static_cast<int>((*static_cast<std::vector<Result>*>(results))[i].tokens.size());
}

void ds2_result_tokens(void* results, int i, int* tokens, int* frames) {
  const Result& result = (*static_cast<std::vector<Result>*>(results))[i];
  std::copy(result.tokens.begin(), result.tokens.end(), tokens);
  std::copy(result.frames.begin(), result.frames.end(), frames);
}

void ds2_results_free(void* results) { delete static_cast<std::vector<Result>*>(results); }

}  // extern "C"
