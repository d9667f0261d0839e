# The seed question's gradients, computed in R the way its author did (seeds/000), on a case
# exported by `bncheck case export --format csv`, and written back for `bncheck verify-values`.
#
#   Rscript seed_question.R CASE_FOLDER OUT_FOLDER
#
# Base R only. The formulas, and their slips, are the author's, kept on purpose: this is what
# bncheck is for. Export the case with --ddof 1 --eps 0, the conventions of R's scale() and sd().

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript seed_question.R CASE_FOLDER OUT_FOLDER")
case_dir <- args[1]
out_dir <- args[2]

# A case is one CSV file per array, without a header: a matrix one line per row, a vector one
# value per line.
read_matrix <- function(name) {
  unname(as.matrix(read.csv(file.path(case_dir, paste0(name, ".csv")), header = FALSE)))
}
read_vector <- function(name) as.vector(read_matrix(name))

settings <- paste(readLines(file.path(case_dir, "settings.json")), collapse = " ")
if (!grepl('"activation": "relu"', settings, fixed = TRUE) ||
    !grepl('"ddof": 1,', settings, fixed = TRUE) ||
    !grepl('"eps": 0.0,', settings, fixed = TRUE)) {
  stop("the author's code is relu with scale(): export the case with --activation relu --ddof 1 --eps 0")
}

X <- read_matrix("X")
y <- read_matrix("y")
G1 <- read_matrix("G1")
G2 <- read_matrix("G2")
gamma <- read_vector("gamma")
beta <- read_vector("beta")
N <- nrow(X)

# The author's definitions, as posted.
a <- function(v) {
  v[v < 0] <- 0
  v
}
# As posted, ap is 1 everywhere: once its first line has zeroed the negative entries, every entry
# is >= 0. So relu' is taken as 1, a slip beyond the Python transcription (the built-in
# seed-question derivation uses the true a'(B)), and it moves grad_beta and grad_G1 off any
# simple multiple of the truth.
ap <- function(v) {
  v[v < 0] <- 0
  v[v >= 0] <- 1
  v
}
b <- function(x, bet = beta, gam = gamma) {
  xs <- scale(x)
  gk <- t(matrix(gam)) %x% matrix(rep(1, N))
  bk <- t(matrix(bet)) %x% matrix(rep(1, N))
  gk * xs + bk
}

# The author's u is the error y - yhat, here at the case's parameters.
V <- a(b(X %*% G1))
u <- y - V %*% G2

stub <- (-2 * u %*% t(G2) * ap(b(X %*% G1)))
# update 1
drdb <- matrix(rep(1, N * 1), nrow = 1) %*% stub
# update 4: a p2 x p2 matrix
drdg <- t(scale(X %*% G1)) %*% (stub * t(matrix(gamma)) %x% matrix(rep(1, N)))
# update 3
w <- t(matrix(gamma)) %x% matrix(rep(1, N)) * (t(apply(X %*% G1, 2, sd)) %x% matrix(rep(1, N)))
drdG1 <- t(X) %*% (stub * w)
# posted for the net without batch norm, under the label dR/dG1; it is the G2 gradient
drdG2 <- -2 * t(V) %*% u

dir.create(out_dir, showWarnings = FALSE)
write_array <- function(value, name) {
  write.table(value, file.path(out_dir, paste0(name, ".csv")), sep = ",", row.names = FALSE, col.names = FALSE)
}
write_array(as.vector(drdb), "grad_beta")  # a vector: one value per line
write_array(drdg, "grad_gamma")
write_array(drdG1, "grad_G1")
write_array(drdG2, "grad_G2")
