// Loads a .scorer the way Mozilla DeepSpeech 0.9's Scorer::load_lm / load_trie does, with the real
// OpenFST (Debian's libfst-dev) and KenLM (the project's .cache/kenlm build), then walks the vocabulary
// FST with the input-label SortedMatcher of Mozilla's PathTrie. Built and run by
// tests/test_scorer_package.py when both libraries are there.
//
// Prints: "offset <end of KenLM search> <file size>", "header <version> <utf8> <alpha> <beta>",
// "props <stored> <computed>" (kCopyProperties bits), "minimal <states> <states after fst::Minimize>",
// then one line per accepted word: its labels separated by spaces. Exit status 1 on any failure.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fst/fstlib.h>

// KenLM keeps the end of the search structures (Mozilla's fork: GetEndOfSearchOffset(), which returns
// backing_.VocabStringReadingOffset()) private in upstream KenLM; this reads the same member.
#define private public
#include "lm/model.hh"
#undef private

template <class M>
bool EndOfSearch(lm::base::Model *model, uint64_t *offset) {
  auto *typed = dynamic_cast<M *>(model);
  if (typed == nullptr) return false;
  *offset = typed->backing_.VocabStringReadingOffset();
  return true;
}

static bool WalkWithMatcher(const fst::StdConstFst &dict, const std::vector<int> &word) {
  fst::SortedMatcher<fst::StdConstFst> matcher(dict, fst::MATCH_INPUT);
  auto state = dict.Start();
  for (int label : word) {
    matcher.SetState(state);
    if (!matcher.Find(label)) return false;
    state = matcher.Value().nextstate;
  }
  return dict.Final(state) != fst::TropicalWeight::Zero();
}

static void Words(const fst::StdConstFst &dict, int state, std::vector<int> *prefix,
                  std::vector<std::vector<int>> *out) {
  if (dict.Final(state) != fst::TropicalWeight::Zero()) out->push_back(*prefix);
  for (fst::ArcIterator<fst::StdConstFst> it(dict, state); !it.Done(); it.Next()) {
    prefix->push_back(it.Value().ilabel);
    Words(dict, it.Value().nextstate, prefix, out);
    prefix->pop_back();
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    std::cerr << "usage: mozilla_scorer_check SCORER\n";
    return 2;
  }
  const std::string path = argv[1];
  lm::ngram::Config config;
  config.load_method = util::LoadMethod::LAZY;
  std::unique_ptr<lm::base::Model> model(lm::ngram::LoadVirtual(path.c_str(), config));
  uint64_t offset = 0;
  using namespace lm::ngram;
  if (!EndOfSearch<ProbingModel>(model.get(), &offset) && !EndOfSearch<TrieModel>(model.get(), &offset) &&
      !EndOfSearch<QuantTrieModel>(model.get(), &offset) &&
      !EndOfSearch<ArrayTrieModel>(model.get(), &offset) &&
      !EndOfSearch<QuantArrayTrieModel>(model.get(), &offset) &&
      !EndOfSearch<RestProbingModel>(model.get(), &offset)) {
    std::cerr << "unknown KenLM model type\n";
    return 1;
  }
  std::ifstream fin(path, std::ios::binary | std::ios::ate);
  std::cout << "offset " << offset << " " << static_cast<uint64_t>(fin.tellg()) << "\n";
  fin.seekg(offset);
  int32_t magic = 0, version = 0;
  bool utf8 = false;
  double alpha = 0, beta = 0;
  fin.read(reinterpret_cast<char *>(&magic), sizeof(magic));
  fin.read(reinterpret_cast<char *>(&version), sizeof(version));
  fin.read(reinterpret_cast<char *>(&utf8), sizeof(utf8));
  fin.read(reinterpret_cast<char *>(&alpha), sizeof(alpha));
  fin.read(reinterpret_cast<char *>(&beta), sizeof(beta));
  if (magic != 'TRIE') {
    std::cerr << "no 'TRIE' header at the end of the KenLM search\n";
    return 1;
  }
  std::cout.precision(17);
  std::cout << "header " << version << " " << utf8 << " " << alpha << " " << beta << "\n";
  fst::FstReadOptions opt;
  opt.mode = fst::FstReadOptions::MAP;
  opt.source = path;
  std::unique_ptr<fst::StdConstFst> dict(fst::StdConstFst::Read(fin, opt));
  if (!dict) {
    std::cerr << "ConstFst::Read failed\n";
    return 1;
  }
  uint64_t known = 0;
  const uint64_t stored = dict->Properties(fst::kFstProperties, false);
  const uint64_t computed = fst::internal::ComputeProperties(*dict, fst::kCopyProperties, &known);
  std::cout << "props " << (stored & fst::kCopyProperties) << " " << (computed & fst::kCopyProperties) << "\n";
  fst::StdVectorFst minimized(*dict);
  fst::Minimize(&minimized);
  std::cout << "minimal " << dict->NumStates() << " " << minimized.NumStates() << "\n";
  std::vector<std::vector<int>> words;
  std::vector<int> prefix;
  Words(*dict, dict->Start(), &prefix, &words);
  for (const auto &word : words) {
    if (!WalkWithMatcher(*dict, word)) {
      std::cerr << "SortedMatcher does not find a word of the FST\n";
      return 1;
    }
    for (size_t i = 0; i < word.size(); ++i) std::cout << (i ? " " : "") << word[i];
    std::cout << "\n";
  }
  return 0;
}
