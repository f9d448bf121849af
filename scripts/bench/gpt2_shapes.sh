# The issue's three GPT-2 sizes on one GPU (sourced by gpu_models.sh and gpu_flash.sh).
#   gpt2_model MODEL (124m, 350m or 1.5b) sets layers, hidden, heads and mbs (the micro batch) and
#   flags: pretrain's flags for it at seq 1024, vocab 50257 (padded 50304), bf16, mock data,
#   dropout 0, 30 iterations at the constant learning rate 1e-4, a log line every 10.
gpt2_model() {
    case $1 in
    124m) read -r layers hidden heads mbs <<<"12 768 12 64" ;;
    350m) read -r layers hidden heads mbs <<<"24 1024 16 32" ;;
    1.5b) read -r layers hidden heads mbs <<<"48 1600 25 16" ;;
    esac
    flags="--num-layers $layers --hidden-size $hidden --num-attention-heads $heads --seq-length 1024
        --max-position-embeddings 1024 --micro-batch-size $mbs --global-batch-size $mbs --train-iters 30
        --lr 1e-4 --lr-decay-style constant --mock-data --tokenizer-type NullTokenizer --vocab-size 50257
        --log-interval 10 --log-throughput --eval-iters 0 --hidden-dropout 0 --attention-dropout 0
        --split 1,1,1 --bf16 --device cuda"
}
