"""Mozilla DeepSpeech's ``ds_ctcdecoder`` API: a C++ CTC prefix beam search with a KenLM scorer that
gives Mozilla's decoder's transcripts (src/prefix_search.cc, built by ``make install``).

    from ds_ctcdecoder import Alphabet, Scorer, ctc_beam_search_decoder
    alphabet = Alphabet("data/alphabet.txt")
    scorer = Scorer(alpha, beta, "kenlm.scorer", alphabet)   # None, None: the package's defaults
    [(confidence, transcript)] = ctc_beam_search_decoder(probs, alphabet, 500, scorer=scorer)
"""
from .alphabet import Alphabet, AlphabetError, UTF8Alphabet
from .decoder import DecodeResult, DecoderState, ctc_beam_search_decoder, ctc_beam_search_decoder_batch
from .package import ScorerError
from .scorer import Scorer

__version__ = "0.1.0"

__all__ = ["Alphabet", "AlphabetError", "UTF8Alphabet", "Scorer", "ScorerError", "DecodeResult", "DecoderState",
           "ctc_beam_search_decoder", "ctc_beam_search_decoder_batch", "__version__"]
