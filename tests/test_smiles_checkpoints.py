"""SMILES masked-LM checkpoints people already have: BERT folders without model_type and with their own vocab.txt,
RoBERTa folders with a byte-level BPE, a tokenizer passed separately; generic tokenizers refused; reactions."""

import json
import os

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizer,
)

from hf_mae import SMILESBERTForMaskedLM, SMILESBERTMLMConfig
from hf_mae.processing.pretrained import infer_model_type
from hf_mae.training.smiles_mlm import ChemBERTaMLM, SmilesMLMFeaturizer, load_masked_lm
from hf_mae.processing.smiles import (
    build_smiles_tokenizer,
    build_vocab,
    check_smiles_tokenizer,
    find_smiles_problems,
    load_smiles_tokenizer,
    reaction_problem,
    tokenize_smiles,
    unknown_fraction,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def rdkit_smiles(n: int = 300) -> list[str]:
    from rdkit import RDConfig

    with open(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")) as handle:
        return [line.split()[0] for line in handle.read().splitlines()[:n]]


def atom_tokens() -> list[str]:
    return sorted(t for t in load_smiles_tokenizer().get_vocab() if t not in SPECIALS)


def drop_model_type(folder, architectures: bool = True) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_type")
    if not architectures:
        config.pop("architectures")
    (folder / "config.json").write_text(json.dumps(config))


def smiles_wordpiece_folder(folder, lower_case_config: bool = False):
    """A BERT masked LM saved as some SMILES-BERT repositories are: config.json without `model_type`, weights, and a
    WordPiece vocab.txt of SMILES pieces (atoms and ##-continuations), no tokenizer_config.json."""
    words = SPECIALS + atom_tokens() + [f"##{t}" for t in atom_tokens()] + ["[", "]", "@", "+", "H", "##H"]
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=128)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(words))
    drop_model_type(folder)
    return folder


def generic_wordpiece_vocab(path):
    """An English-style WordPiece vocabulary (words, single letters, lower case), as a generic BERT has."""
    words = SPECIALS + ["the", "of", "and", "to", "in", "is", "##s", "##ed", "##ing", "(", ")", "=", "#", "[", "]",
                        *"abcdefghijklmnopqrstuvwxyz", *"0123456789"]
    path.write_text("\n".join(words))
    return path


def roberta_bpe_folder(folder):
    """A RoBERTa masked LM with a byte-level BPE trained on real SMILES (as ChemBERTa is built)."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(rdkit_smiles(), vocab_size=300, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir(exist_ok=True)
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(0)
    RobertaForMaskedLM(RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=130,
                                     pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_bert_folder_without_model_type_and_its_own_vocab_txt(tmp_path, caplog):
    folder = smiles_wordpiece_folder(tmp_path / "smiles-wordpiece")
    with caplog.at_level("WARNING"):
        model, tokenizer = load_masked_lm(folder)
    assert "has no `model_type`; using 'bert', inferred from architectures ['BertForMaskedLM']" in caplog.text
    assert "do_lower_case=False" in caplog.text
    assert type(model) is BertForMaskedLM and type(tokenizer) is BertTokenizer
    # WordPiece after BERT's punctuation split: each word greedily into SMILES pieces, nothing unknown
    assert tokenizer.tokenize("OC(=O)c1ccc(Br)cc1") == ["O", "##C", "(", "=", "O", ")", "c", "##1", "##c", "##c",
                                                       "##c", "(", "Br", ")", "c", "##c", "##1"]
    assert unknown_fraction(tokenizer) == 0.0
    # the weights are the saved ones
    saved = BertForMaskedLM.from_pretrained(folder, config=model.config)
    for name, value in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_model_type_inferred_from_weight_names_or_refused_naming_the_key(tmp_path, caplog):
    folder, _ = roberta_bpe_folder(tmp_path / "roberta")
    drop_model_type(folder, architectures=False)
    assert infer_model_type(json.loads((folder / "config.json").read_text()), folder) == (
        "roberta", "the weights' names (roberta.*)")
    with caplog.at_level("WARNING"):
        model, tokenizer = load_masked_lm(folder)
    assert type(model) is RobertaForMaskedLM and tokenizer.mask_token == "<mask>"
    assert "inferred from the weights' names (roberta.*)" in caplog.text

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"hidden_size": 16}))
    with pytest.raises(ValueError, match=r"config.json has no `model_type` key.*\"model_type\": \"bert\""):
        load_masked_lm(bare)


def test_roberta_bpe_folder_and_a_tokenizer_passed_separately(tmp_path):
    folder, tokenizer = roberta_bpe_folder(tmp_path / "roberta")
    model, loaded = load_masked_lm(folder)
    assert type(model) is RobertaForMaskedLM and loaded.tokenize(ASPIRIN) == tokenizer.tokenize(ASPIRIN)

    weights_only = tmp_path / "weights-only"       # the tokenizer lives elsewhere: a folder or an object
    model.save_pretrained(weights_only)
    for given in (folder, tokenizer):
        _, separate = load_masked_lm(weights_only, tokenizer=given)
        assert separate(ASPIRIN)["input_ids"] == tokenizer(ASPIRIN)["input_ids"]


def test_hf_mae_smiles_bert_with_the_bundled_tokenizer_object(tmp_path):
    config = SMILESBERTMLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    SMILESBERTForMaskedLM(config).save_pretrained(tmp_path / "bert")
    model, tokenizer = load_masked_lm(tmp_path / "bert", tokenizer=load_smiles_tokenizer())
    assert type(model) is SMILESBERTForMaskedLM
    assert tokenizer.convert_ids_to_tokens(tokenizer("Cl[C@@H]1CC1")["input_ids"])[1:3] == ["Cl", "[C@@H]"]


def test_generic_wordpiece_is_refused_naming_the_tokenizer_and_the_fix(tmp_path):
    folder = smiles_wordpiece_folder(tmp_path / "model")
    generic = tmp_path / "generic"
    generic.mkdir()
    generic_wordpiece_vocab(generic / "vocab.txt")
    with pytest.raises(ValueError) as raised:
        load_masked_lm(folder, tokenizer=generic)
    message = str(raised.value)
    assert f"the tokenizer '{generic}' (BertTokenizer) maps" in message
    assert "of the characters of valid SMILES to its unknown token '[UNK]'" in message
    assert "Pass the masked LM's own SMILES tokenizer with `tokenizer=`" in message
    fraction = unknown_fraction(BertTokenizer(str(generic / "vocab.txt"), do_lower_case=False))
    assert fraction > 0.5                      # most characters of valid SMILES would become [UNK]


def test_lower_casing_tokenizer_is_refused():
    words = SPECIALS + atom_tokens() + [f"##{t}" for t in atom_tokens()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    with pytest.raises(ValueError, match=r"lower-cases its input.*'C' and aromatic 'c'.*do_lower_case=False"):
        check_smiles_tokenizer(BertTokenizer(vocab=vocab, do_lower_case=True), "lowercasing")
    check_smiles_tokenizer(BertTokenizer(vocab=vocab, do_lower_case=False), "case-sensitive")


def test_pickled_masked_lm_needs_the_opt_in(tmp_path):
    folder, tokenizer = roberta_bpe_folder(tmp_path / "roberta")
    model = RobertaForMaskedLM.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(OSError, match=r"load_masked_lm\(.*only pickled weights \(pytorch_model.bin\).*"
                                      r"use_safetensors=False"):
        load_masked_lm(folder)
    loaded, _ = load_masked_lm(folder, use_safetensors=False)
    ids = torch.tensor([tokenizer(ASPIRIN)["input_ids"]])
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.eval()(ids).logits.numpy(), model.eval()(ids).logits.numpy())


def test_missing_local_model_or_tokenizer_folder_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^folder runs/typo does not exist \(`model_name`"):
        load_masked_lm("runs/typo")
    folder = smiles_wordpiece_folder(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match=r"^folder ./tok does not exist \(`tokenizer`"):
        load_masked_lm(folder, tokenizer="./tok")


# ---------------------------------------------------------------------------------------------------------
# SmilesMLMFeaturizer and ChemBERTaMLM on those checkpoints
# ---------------------------------------------------------------------------------------------------------
def test_featurizer_on_a_bert_folder_without_model_type(tmp_path):
    folder = smiles_wordpiece_folder(tmp_path / "smiles-wordpiece")
    featurizer = SmilesMLMFeaturizer(folder, batch_size=2)
    features = featurizer.featurize(rdkit_smiles(5))
    assert features.shape == (5, 16) and features.dtype == np.float32
    # the one SMILES embedding: mean of the encoder's last hidden state over the molecule's own tokens
    encoded = featurizer.tokenizer(rdkit_smiles(1), return_tensors="pt")
    with torch.no_grad():
        hidden = featurizer.model.base_model(input_ids=encoded["input_ids"]).last_hidden_state[0, 1:-1]
    np.testing.assert_allclose(features[0], hidden.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert featurizer.predict_masked("CC(=O)[MASK]")[0].candidates


def test_featurizer_and_fine_tuning_with_a_separate_tokenizer(tmp_path):
    folder, tokenizer = roberta_bpe_folder(tmp_path / "roberta")
    weights_only = tmp_path / "weights-only"
    RobertaForMaskedLM.from_pretrained(folder).save_pretrained(weights_only)
    featurizer = SmilesMLMFeaturizer(weights_only, tokenizer=folder)
    np.testing.assert_allclose(featurizer.featurize([ASPIRIN]), SmilesMLMFeaturizer(folder).featurize([ASPIRIN]))
    assert featurizer.predict_masked("CC(=O)<mask>")[0].masked_smiles == "CC(=O)<mask>"

    mlm = ChemBERTaMLM(str(weights_only), tokenizer=tokenizer, max_length=64)
    report = mlm.fine_tune(rdkit_smiles(24), epochs=1, batch_size=8, verbose=False, output_dir=str(tmp_path / "ft"))
    assert report["n_train"] + report["n_validation"] + report["n_skipped"] == 24 and report["n_validation"] >= 1
    assert np.isfinite(report["eval_loss"])


def test_featurizer_and_fine_tuning_refuse_a_generic_tokenizer(tmp_path):
    folder = smiles_wordpiece_folder(tmp_path / "model")
    generic = tmp_path / "generic"
    generic.mkdir()
    generic_wordpiece_vocab(generic / "vocab.txt")
    message = rf"the tokenizer '{generic}' \(BertTokenizer\) maps \d+% of the characters of valid SMILES.*`tokenizer=`"
    with pytest.raises(ValueError, match=message):
        SmilesMLMFeaturizer(folder, tokenizer=generic)
    with pytest.raises(ValueError, match=message):
        ChemBERTaMLM(str(folder), tokenizer=str(generic))
    model, _ = load_masked_lm(folder)
    with pytest.raises(ValueError, match=r"maps \d+% of the characters of valid SMILES"):
        SmilesMLMFeaturizer.from_model(model, BertTokenizer(str(generic / "vocab.txt"), do_lower_case=False))


def test_featurizer_missing_folder_and_pickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^folder runs/typo does not exist"):
        SmilesMLMFeaturizer("runs/typo")
    folder, _ = roberta_bpe_folder(tmp_path / "roberta")
    model = RobertaForMaskedLM.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(OSError, match="use_safetensors=False"):
        SmilesMLMFeaturizer(folder)
    with pytest.raises(OSError, match="use_safetensors=False"):
        ChemBERTaMLM(str(folder))
    assert SmilesMLMFeaturizer(folder, use_safetensors=False).featurize([ASPIRIN]).shape == (1, 16)


# ---------------------------------------------------------------------------------------------------------
# Reactions
# ---------------------------------------------------------------------------------------------------------
def reaction_tokenizer():
    """The bundled rules with '>' in the vocabulary, as a reaction model's tokenizer would have."""
    counts = {t: 1 for s in rdkit_smiles(50) for t in tokenize_smiles(s)}
    return build_smiles_tokenizer(build_vocab({**counts, ">": 1, "[H+]": 1}))


def test_reaction_smiles_only_when_asked_and_each_side_validated():
    tokenizer = reaction_tokenizer()
    esterification = "CC(=O)O.OCC>>CC(=O)OCC.O"
    with_agent = "CC(=O)O.OCC>[H+]>CC(=O)OCC.O"
    assert [str(p) for p in find_smiles_problems([esterification], tokenizer, 64)] == [
        f"#0 {esterification!r}: a reaction SMILES (it contains '>'); pass reactions=True to accept reactions"]
    assert find_smiles_problems([esterification, with_agent, "CCO"], tokenizer, 64, reactions=True) == []
    bad = ["C1CC.O>>CCO", "CCO>>", "CCO>C>C>C", "CCO>>C(C"]
    reasons = [p.reason for p in find_smiles_problems(bad, tokenizer, 64, reactions=True)]
    assert reasons == ["reactants 'C1CC.O' are not valid SMILES (RDKit could not parse them)",
                       "the reaction has no products",
                       "a reaction SMILES needs the form reactants>agents>products (two '>'), got 3 '>'",
                       "products 'C(C' are not valid SMILES (RDKit could not parse them)"]
    # the bundled tokenizer has no '>': a reaction is then reported as an unknown token, not silently [UNK]
    problems = find_smiles_problems([esterification], load_smiles_tokenizer(), 64, reactions=True)
    assert problems[0].reason == "token(s) ['>'] are not in the tokenizer's vocabulary"
    assert reaction_problem("CCO>>C1CC") == "products 'C1CC' are not valid SMILES (RDKit could not parse them)"


def test_featurizer_and_fine_tuning_take_reactions_when_asked(tmp_path):
    tokenizer = reaction_tokenizer()
    config = SMILESBERTMLMConfig(vocab_size=max(tokenizer.get_vocab().values()) + 1, hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 max_position_embeddings=128)
    SMILESBERTForMaskedLM(config).save_pretrained(tmp_path / "rxn")
    tokenizer.save_pretrained(tmp_path / "rxn")
    reactions = ["CC(=O)O.OCC>>CC(=O)OCC.O", "CCO.CC(=O)Cl>>CC(=O)OCC.Cl"]
    with pytest.raises(ValueError, match="a reaction SMILES.*pass reactions=True"):
        SmilesMLMFeaturizer(tmp_path / "rxn").featurize(reactions)
    featurizer = SmilesMLMFeaturizer(tmp_path / "rxn", reactions=True)
    assert featurizer.featurize(reactions).shape == (2, 16)
    with pytest.raises(ValueError, match=r"#0 'C1CC>>CCO': reactants 'C1CC' are not valid SMILES"):
        featurizer.featurize(["C1CC>>CCO"])
    mlm = ChemBERTaMLM(str(tmp_path / "rxn"), reactions=True, max_length=64)
    report = mlm.fine_tune(reactions * 3 + ["C1CC>>CCO"], epochs=1, batch_size=4, verbose=False)
    assert (report["n_train"] + report["n_validation"], report["n_skipped"]) == (6, 1)


def test_pretrain_job_refuses_a_generic_tokenizer_in_one_line(tmp_path, capsys):
    from hf_mae.cli import main

    generic = tmp_path / "generic"
    generic.mkdir()
    generic_wordpiece_vocab(generic / "vocab.txt")
    assert main(["pretrain", "smiles-bert", "--tokenizer", str(generic), "--output_dir", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"hf-mae: error: the tokenizer '{generic}' (BertTokenizer) maps ") and error.count("\n") == 1
    assert main(["pretrain", "smiles-bert", "--tokenizer", "./missing", "--output_dir", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("hf-mae: error: folder ./missing does not exist (`tokenizer`")
