//! BERT and XLM-RoBERTa through candle-transformers' modules, which match
//! transformers exactly for these encoders (post-LayerNorm blocks, exact-erf GELU,
//! additive `(1 - mask) * finfo.min` padding mask, absolute position embeddings;
//! XLM-R position ids `cumsum(ids != pad) * (ids != pad) + pad`, as transformers'
//! `create_position_ids_from_input_ids`).

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};
use serde_json::{json, Value};

use crate::config::with_defaults;

pub struct Bert {
    model: bert::BertModel,
}

impl Bert {
    pub fn load(config: &Value, vb: VarBuilder) -> Result<Self> {
        // BertConfig defaults for keys candle's serde config requires.
        let v = with_defaults(
            config.clone(),
            &[
                ("hidden_act", json!("gelu")),
                ("hidden_dropout_prob", json!(0.1)),
                ("max_position_embeddings", json!(512)),
                ("type_vocab_size", json!(2)),
                ("initializer_range", json!(0.02)),
                ("layer_norm_eps", json!(1e-12)),
                ("pad_token_id", json!(0)),
            ],
        );
        if let Some(p) = v.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                bail!("BERT position_embedding_type {p:?} is not supported (absolute only)");
            }
        }
        let cfg: bert::Config =
            serde_json::from_value(v).context("config.json is not a BERT config")?;
        // BertModel::load finds an optional "bert." / "<model_type>." prefix itself.
        let model = bert::BertModel::load(vb, &cfg)?;
        Ok(Bert { model })
    }

    /// `ids`, `mask`: u32 `[B, S]` -> last hidden states `[B, S, hidden]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let token_type_ids = ids.zeros_like()?;
        Ok(self.model.forward(ids, &token_type_ids, Some(mask))?)
    }
}

pub struct XlmRoberta {
    model: xlm_roberta::XLMRobertaModel,
}

impl XlmRoberta {
    pub fn load(config: &Value, vb: VarBuilder) -> Result<Self> {
        // XLMRobertaConfig defaults; transformers 5 leaves position_embedding_type out.
        let v = with_defaults(
            config.clone(),
            &[
                ("position_embedding_type", json!("absolute")),
                ("hidden_act", json!("gelu")),
                ("attention_probs_dropout_prob", json!(0.1)),
                ("hidden_dropout_prob", json!(0.1)),
                ("max_position_embeddings", json!(512)),
                ("type_vocab_size", json!(2)),
                ("layer_norm_eps", json!(1e-12)),
                ("pad_token_id", json!(1)),
            ],
        );
        let cfg: xlm_roberta::Config =
            serde_json::from_value(v).context("config.json is not an XLM-RoBERTa config")?;
        if cfg.position_embedding_type != "absolute" {
            bail!(
                "XLM-R position_embedding_type {:?} is not supported (absolute only)",
                cfg.position_embedding_type
            );
        }
        let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
            vb.pp("roberta")
        } else {
            vb
        };
        let model = xlm_roberta::XLMRobertaModel::new(&cfg, vb)?;
        Ok(XlmRoberta { model })
    }

    /// `ids`, `mask`: u32 `[B, S]` -> last hidden states `[B, S, hidden]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let token_type_ids = ids.zeros_like()?;
        Ok(self
            .model
            .forward(ids, mask, &token_type_ids, None, None, None)?)
    }
}
