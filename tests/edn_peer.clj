;; A framed-EDN peer for tests/test_edn_peer.py: plain java.net sockets and
;; clojure.edn, speaking what Aleph's TCP example speaks (Gloss's
;; (finite-frame :uint32 (string :utf-8)): a big-endian uint32 length, then
;; that many bytes of UTF-8 EDN).
;;
;;   clojure edn_peer.clj client HOST ECHO-PORT INC-PORT
;;     sends its corpus to an echo server and a few numbers to an inc server,
;;     reads each answer and compares value AND type with what Clojure itself
;;     makes of the text; prints one EDN map per case, then {:done n}.
;;   clojure edn_peer.clj server
;;     echoes every frame as (pr-str (edn/read-string frame)) on 127.0.0.1 and
;;     a free port, printed as "PORT n"; exits when stdin closes.
;;
;; Everything runs on threads with a 256 MiB stack: Clojure's reader and
;; printer recurse, and the corpus nests 1,000 levels deep.

(require '[clojure.edn :as edn])
(import '[java.io DataInputStream DataOutputStream BufferedInputStream
          BufferedOutputStream PrintWriter OutputStreamWriter]
        '[java.net Socket ServerSocket InetAddress]
        '[java.nio.charset StandardCharsets])

(def out (PrintWriter. (OutputStreamWriter. System/out StandardCharsets/UTF_8) true))

(defn say [x] (locking out (.println out (pr-str x))))

(defn write-frame [^DataOutputStream o ^String text]
  (let [bytes (.getBytes text StandardCharsets/UTF_8)]
    (.writeInt o (alength bytes))
    (.write o bytes)
    (.flush o)))

(defn read-frame [^DataInputStream i]
  (let [n (.readInt i)
        bytes (byte-array n)]
    (.readFully i bytes)
    (String. bytes StandardCharsets/UTF_8)))

(defn typed
  "x with the class of every value in it, to compare types as well as values
  (scalars by their printed form: 1.5M and 1.50M differ, ##NaN equals itself)."
  [x]
  (cond
    (map? x) (list :map (class x) (into {} (map (fn [[k v]] [(typed k) (typed v)]) x)))
    (set? x) (list :set (class x) (set (map typed x)))
    (sequential? x) (list :seq (class x) (mapv typed x))
    :else (list :scalar (class x) (pr-str x))))

(defn nested [depth open close]
  (str (apply str (repeat depth open)) (apply str (repeat depth close))))

(def corpus
  "[name, EDN text sent as it is]"
  [["nil" "nil"] ["true" "true"] ["false" "false"]
   ["long" "42"] ["long max" "9223372036854775807"] ["long min" "-9223372036854775808"]
   ["bigint 1N" "1N"] ["bigint 0N" "0N"] ["bigint -7N" "-7N"]
   ["bigint past a long" "12345678901234567890N"]
   ["bigint read from a plain big number" "12345678901234567890"]
   ["bigint of 6,000 digits" (pr-str (reduce * (repeat 20000 2N)))]
   ["bigdecimal" "1.5M"] ["bigdecimal scale" "1.50M"] ["bigdecimal exponent" "1E+10M"]
   ["bigdecimal zero" "-0.000M"]
   ["bigdecimal long" "123456789012345678901234567890.123456789M"]
   ["ratio" "1/3"] ["ratio reduced" "-2/4"] ["ratio of bigints" (pr-str (/ 1N 12345678901234567890N))]
   ["double" "1.5"] ["double -0.0" "-0.0"] ["double small" "1.0E-5"]
   ["double inf" "##Inf"] ["double -inf" "##-Inf"] ["double nan" "##NaN"]
   ["string" "\"hello\""] ["string empty" "\"\""] ["string unicode" "\"é日本😀\""]
   ["string escapes" "\"tab\\tnl\\ncr\\rq\\\"bs\\\\\""]
   ["char" "\\a"] ["char newline" "\\newline"] ["char space" "\\space"] ["char tab" "\\tab"]
   ["char unicode" "\\u00e9"] ["char paren" "\\("] ["char backslash" "\\\\"]
   ["symbol" "foo"] ["symbol ns" "ns/foo"] ["symbol slash" "/"]
   ["symbol ns slash" "clojure.core//"] ["symbol punctuation" "a.b/c-d?"]
   ["keyword" ":k"] ["keyword ns" ":ns/k"] ["keyword dotted ns" ":a.b/c"]
   ["namespaced map" "#:ns{:a 1 :b 2}"] ["namespaced map escapes" "#:ns{:a 1, :_/b 2, c 3}"]
   ["inst" "#inst \"2020-01-02T03:04:05.678-00:00\""] ["inst zulu" "#inst \"1985-04-12T23:20:50.52Z\""]
   ["uuid" "#uuid \"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\""]
   ["numbers side by side" "[1 1N 1.0 1M 1/2]"] ["edn equality keys" "{1 :a, 1.0 :b, true :c}"]
   ["zero and false" "#{0 false nil}"] ["lists" "(1 (2 (3)))"]
   ["empty collections" "[() {} #{} []]"] ["collection keys" "{[1] :v, #{2} :s, {:k 1} :m}"]
   ["big map" (pr-str (zipmap (range 20) (map str (range 20))))]
   ["metadata dropped" "^:m [1]"]
   ["vectors 1,000 deep" (nested 1000 "[" "]")]
   ["mixed 1,000 deep" (nested 333 "[{:k #{" "}}]")]
   ["lists 1,000 deep" (nested 1000 "(" ")")]
   ["empty frame" ""] ["blank frame" "  ; only a comment"] ["discard only" "#_ 1"]])

(def inc-corpus
  [["inc long" "41"] ["inc bigint" "1N"] ["inc negative bigint" "-1N"]
   ["inc big bigint" "12345678901234567890N"] ["inc double" "1.5"] ["inc ratio" "1/2"]
   ["inc bigdecimal" "1.5M"]])

(defn short-text [s] (if (> (count s) 300) (str (subs s 0 300) "...") s))

(defn check
  "Sends one case and compares the answer; false once the connection is gone."
  [o i [case-name text] expect]
  (write-frame o text)
  (let [reply (try (read-frame i) (catch java.io.IOException e nil))]
    (if (nil? reply)
      (do (say {:case case-name :ok false :error "no answer: the connection is gone"}) false)
      (let [expected (expect (edn/read-string text))
            received (try (edn/read-string reply)
                          (catch Exception e (list :unreadable (.getMessage e))))
            ok (= (typed expected) (typed received))]
        (say (cond-> {:case case-name :ok ok}
               (not ok) (assoc :sent (short-text text) :reply (short-text reply)
                               :expected (short-text (pr-str (typed expected)))
                               :received (short-text (pr-str (typed received))))))
        true))))

(defn run-client [host echo-port inc-port]
  (doseq [[port cases expect] [[echo-port corpus identity] [inc-port inc-corpus inc']]]
    (with-open [s (Socket. ^String host (int port))]
      (.setSoTimeout s 30000)
      (let [o (DataOutputStream. (BufferedOutputStream. (.getOutputStream s)))
            i (DataInputStream. (BufferedInputStream. (.getInputStream s)))]
        (loop [[c & more] cases]
          (when c
            (if (check o i c expect)
              (recur more)
              (doseq [[case-name] more]
                (say {:case case-name :ok false :error "not sent: the connection is gone"}))))))))
  (say {:done (+ (count corpus) (count inc-corpus))}))

(defn echo-connection [^Socket s]
  (with-open [s s]
    (let [o (DataOutputStream. (BufferedOutputStream. (.getOutputStream s)))
          i (DataInputStream. (BufferedInputStream. (.getInputStream s)))]
      (try
        (loop []
          (let [text (read-frame i)]
            (write-frame o (try (pr-str (edn/read-string text))
                                (catch Exception e (pr-str {:edn-peer/error (.getMessage e)}))))
            (recur)))
        (catch java.io.EOFException _ nil)))))

(defn big-stack-thread ^Thread [f]
  (doto (Thread. nil f "edn-peer" (* 256 1024 1024)) (.setDaemon true) (.start)))

(defn run-server []
  (let [server (ServerSocket. 0 50 (InetAddress/getByName "127.0.0.1"))]
    (big-stack-thread #(loop [] (let [s (.accept server)] (big-stack-thread (fn [] (echo-connection s)))) (recur)))
    (.println out (str "PORT " (.getLocalPort server)))
    (.flush out)
    (while (not= -1 (.read System/in)))  ; until the test closes our stdin
    (System/exit 0)))

(let [[mode host echo-port inc-port] *command-line-args*]
  (case mode
    "client" (let [t (big-stack-thread #(try (run-client host (Long/parseLong echo-port)
                                                         (Long/parseLong inc-port))
                                             (catch Throwable e (say {:error (str e)}))))]
               (.join t)
               (System/exit 0))
    "server" (run-server)))
